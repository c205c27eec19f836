"""python -m poolscore.client.demo: the same as poolscore demo."""
import sys

from poolscore.client.demo import main

sys.exit(main())
