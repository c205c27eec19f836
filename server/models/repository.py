"""The model repository: a folder of model folders, loaded as one set and swapped on reload.

It loads every folder it can and reports the others: one broken model never takes the rest
down. The backend loads each model file (base.Backend.runner), so this file knows no backend."""
from __future__ import annotations

import logging
from pathlib import Path

from poolscore.server.backends.base import Backend
from poolscore.server.errors import BadInput
from poolscore.server.models import config as model_config
from poolscore.server.models.config import ModelConfig, ModelConfigError
from poolscore.server.models.hosted import Committee, HostedModel

log = logging.getLogger(__name__)
Model = HostedModel | Committee


class ModelRepository:
    """Models loaded from a folder of model folders; `reload` swaps in a fresh set atomically."""

    def __init__(self, root: Path | None, backend: Backend) -> None:
        self.root, self.backend = root, backend
        self.models: dict[str, Model] = {}
        self.errors: dict[str, str] = {}
        self.reload()

    def get(self, name: str) -> Model:
        model = self.models.get(name)
        if model is None:
            why = f" (it failed to load: {self.errors[name]})" if name in self.errors else ""
            raise BadInput("model.name", f"no model {name!r}{why}; serving: {', '.join(sorted(self.models)) or 'none'}")
        return model

    def reload(self) -> None:
        configs, errors = {}, {}
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()) if self.root else []:
            try:
                configs[folder.name] = model_config.load(folder)
            except ModelConfigError as err:
                errors[folder.name] = str(err)
        models: dict[str, Model] = {}
        for name, cfg in configs.items():
            if not cfg.committee:
                try:
                    models[name] = self._load(cfg)
                except Exception as err:  # noqa: BLE001 - one broken model must not stop the others
                    errors[name] = err.args[0] if isinstance(err, ModelConfigError) else f"{cfg.model_file}: {err}"
        for name, cfg in configs.items():
            if cfg.committee:
                missing = [m for m in cfg.committee if not isinstance(models.get(m), HostedModel)]
                if missing:
                    errors[name] = f"{cfg.folder / 'config.json'}: committee: no loaded model {missing[0]!r}"
                else:
                    models[name] = Committee(cfg, [models[m] for m in cfg.committee], self.backend)
        for name, err in errors.items():
            log.error("model %s not served: %s", name, err)
        self.models, self.errors = models, errors  # one assignment each: readers see old or new

    def _load(self, cfg: ModelConfig) -> HostedModel:
        runner = self.backend.runner(cfg.model_file, cfg, mc=False)
        # a TorchScript model switches its own Dropout modules on: the same file serves MC passes
        mc_path = cfg.mc_file or (cfg.model_file if cfg.model_file.suffix == ".pt" else None)
        mc = self.backend.runner(mc_path, cfg, mc=True) if mc_path else None
        return HostedModel(cfg, runner, mc, self.backend)
