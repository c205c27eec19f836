"""The streaming top-K: one ordering contract, two implementations (NumPy, torch).

The contract, which tests/test_topk.py holds both to:
- a value holds the K best (score, id) pairs of everything merged into it, and `merged`
  returns a new value, leaving the old one as it was (a failed batch changes nothing);
- order is score descending, then id ascending, so a pool gives the same answer however it
  is batched;
- memory is O(K + batch): a value holds at most 2K pairs (`held_ids`), whatever the pool.

How: each merge first cuts the batch by the K-th pair of the last sort. Late in a pool
almost no row beats it, so one comparison and one nonzero over the batch are all the work.
Candidates that pass are collected unsorted, and sorted (with the best K so far) only once K
of them have piled up: sorting is amortised over many batches.
"""
