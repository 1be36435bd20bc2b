"""swiniqa: SMART-IQA (HyperIQA head on a Swin backbone) trained and studied at scale on Ray."""

from swiniqa.config import TrainConfig, load_config, preset
from swiniqa.models import build_model, count_parameters

__version__ = "0.1.0"
__all__ = ["TrainConfig", "load_config", "preset", "build_model", "count_parameters", "__version__"]
