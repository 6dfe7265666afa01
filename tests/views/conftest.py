"""A home with stored bars, a training study and a registered model crowned king (real MLflow store)."""

from __future__ import annotations

from dataclasses import dataclass
import pytest

from cappuccino_core.config import Settings
from cappuccino_core.search import runner
from cappuccino_core.search.spec import StudySpec
from cappuccino_core.tracking.store import ensure_store
from tests.arena.registry_fixtures import SYMBOLS, Registry, register_random_candidate, training_study
from tests.search.conftest import fill_store

MODEL = "views-ppo"


@dataclass(frozen=True)
class ModelHome:
    """The home, its registry and the study; ``version`` is registered and holds the alias ``king``."""

    settings: Settings
    reg: Registry
    spec: StudySpec
    version: str

    def env(self) -> dict[str, str]:
        """The environment that points the command line at this home."""
        return {"CAPPUCCINO_HOME": str(self.settings.home), "CAPPUCCINO_CONFIG": str(self.settings.home / "absent.toml"),
                "CAPPUCCINO_SYMBOLS": ",".join(SYMBOLS), "CAPPUCCINO_MODEL_NAME": MODEL}


@pytest.fixture(scope="session")
def model_home(tmp_path_factory) -> ModelHome:
    """70 days of 1h bars, a study with a 3-week holdout, one random (trading) candidate as king."""
    home = tmp_path_factory.mktemp("views") / "home"
    settings = Settings(home=home, symbols=SYMBOLS, model_name=MODEL)
    reg = Registry(runner.StudyLocation.from_settings(settings), fill_store(settings.bars_dir, days=70))
    ensure_store(reg.loc.tracking_uri)
    spec = training_study(reg, "views-study", holdout_weeks=3, model_name=MODEL)
    version = register_random_candidate(reg, spec, 0, seed=1)
    reg.client.set_registered_model_alias(MODEL, "king", version)
    return ModelHome(settings, reg, spec, version)


@pytest.fixture
def cli_env(model_home: ModelHome, monkeypatch: pytest.MonkeyPatch) -> ModelHome:
    """Point the command line at the model home for one test."""
    for key, value in model_home.env().items():
        monkeypatch.setenv(key, value)
    return model_home
