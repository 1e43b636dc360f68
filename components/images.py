"""Which of our images each component runs in (tags come from diffucoder.images, the one place)."""

from diffucoder.images import image_ref

TOOLS_IMAGE = image_ref("tools")  # data steps, run control, registration: CPU only
TRAINER_IMAGE = image_ref("trainer")  # training and evaluation: CUDA + DeepSpeed
