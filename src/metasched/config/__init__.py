"""Typed run configurations: YAML presets plus ``key=value`` overrides, checked on load.

``schema`` holds the sections, ``checks`` what a whole configuration must satisfy,
``building`` turns dictionaries and overrides into checked configurations, ``files`` reads
presets and YAML files.

Example:
    >>> config = load_config("demo", ["train.iterations=10"])
    >>> config.train.iterations
    10
"""

from metasched.config.building import apply_overrides, build, config_from_dict, parse_override
from metasched.config.files import load_config, preset_names, read_config_file
from metasched.config.schema import (
    LR_SCHEDULES,
    REWARD_SPLITS,
    AssayTaskConfig,
    Config,
    LearnerConfig,
    ModelConfig,
    SchedulerConfig,
    TaskConfig,
    TrainConfig,
)

__all__ = [
    "LR_SCHEDULES",
    "REWARD_SPLITS",
    "AssayTaskConfig",
    "Config",
    "LearnerConfig",
    "ModelConfig",
    "SchedulerConfig",
    "TaskConfig",
    "TrainConfig",
    "apply_overrides",
    "build",
    "config_from_dict",
    "load_config",
    "parse_override",
    "preset_names",
    "read_config_file",
]
