"""The native rollout engine's Llama-family decoder (Llama 2/3, Qwen2/2.5, Qwen3, Mistral), fed from HF weights.

Training uses ``transformers`` models (any architecture); this package only serves fast generation. Importing it
pulls in torch alone (no transformers).
"""

from verl.models.config import SUPPORTED_MODEL_TYPES, DecoderConfig, UnsupportedModelError
from verl.models.llama import LlamaDecoder
from verl.models.rope import RopeConfig

__all__ = ["DecoderConfig", "LlamaDecoder", "RopeConfig", "SUPPORTED_MODEL_TYPES", "UnsupportedModelError"]
