from .config import CfgNode, ConfigError, get_cfg, load_config, load_yaml_file

__all__ = ["CfgNode", "ConfigError", "get_cfg", "load_config", "load_yaml_file"]
