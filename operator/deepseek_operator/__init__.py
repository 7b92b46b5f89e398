"""deepseek-operator: serves the DeepSeek-R1 model family on Kubernetes GPU clusters."""

__version__ = "0.1.0"
