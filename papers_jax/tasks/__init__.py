"""Paper recipes: model + objective + extra state + evaluation, selected by `config.task`."""

import importlib

from papers_jax.errors import ConfigError

# config.task → the class in papers_jax/tasks/<task>.py (imported only when chosen).
TASK_CLASSES = {
    "classification": "ClassificationTask",
    "mae": "MAETask",
    "ssl": "SSLTask",
    "clip": "CLIPTask",
    "lm": "LMTask",
    "text_finetune": "TextFinetuneTask",
    "speech_to_text": "SpeechToTextTask",
    "gan": "GANTask",
    "vae": "VAETask",
    "forecast": "ForecastTask",
    "detection": "DetectionTask",
    "segmentation": "SegmentationTask",
    "wav2vec2": "Wav2Vec2Task",
    "ctc": "CTCTask",
    "cpc": "CPCTask",
    "diffusion": "DiffusionTask",
    "vqvae": "VQVAETask",
    "code_prior": "CodePriorTask",
    "ts_representation": "TSRepresentationTask",
    "ts_repr_forecast": "TSReprForecastTask",
    "promptable_segmentation": "PromptableSegmentationTask",
    "vision_language": "VisionLanguageTask",
    "masked_patch_prediction": "MaskedPatchPredictionTask",
    "beit3": "BEiT3Task",
    "blip": "BLIPTask",
    "albef": "ALBEFTask",
    "word2vec": "Word2VecTask",
    "simcse": "SimCSETask",
    "elmo": "ELMoTask",
    "beit": "BEiTTask", "igpt": "IGPTTask", "dae": "DenoisingAutoencoderTask",
    "self_training": "SelfTrainingTask",
    "video_clip": "VideoCLIPTask",
    "groupvit": "GroupViTTask",
    "lseg": "LSegTask",
    "pointclip": "PointCLIPTask",
    "depthclip": "DepthCLIPTask",
    "audioclip": "AudioCLIPTask",
    "glip": "GLIPTask",
    "vild": "ViLDTask",
    "super_resolution": "SuperResolutionTask",
    "two_stream": "TwoStreamTask",
    "unclip": "UnCLIPTask",
    "bev_detection": "BEVDetectionTask",
}
TASKS = tuple(TASK_CLASSES)


def get_task(config):
  """The task object of `config.task`, after checking the ranges of its config section."""
  if config.task not in TASK_CLASSES:
    raise ConfigError(f"unknown task {config.task!r}; choose from {TASKS}")
  module = importlib.import_module(f"papers_jax.tasks.{config.task}")
  if config.task in config:
    from papers_jax.core import config as config_lib
    config_lib.check_ranges(config[config.task], getattr(module, "RANGES", ()), f"{config.task}.")
  return getattr(module, TASK_CLASSES[config.task])(config)
