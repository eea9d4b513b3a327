"""verl: reinforcement-learning post-training of large language models.

Importing the package is cheap: it pulls in torch and numpy for :class:`DataProto` and nothing else
(no Ray, no transformers). Heavier layers are imported by the modules that need them.
"""

from verl.protocol import DataProto

__version__ = "0.1.0"
__all__ = ["DataProto", "__version__"]
