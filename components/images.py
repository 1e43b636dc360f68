"""Which of our images each component runs in (tags come from diffucoder.images, the one place).

Read when the components are imported: ``$DIFFUCODER_IMAGE_REGISTRY`` picks the registry and
``$DIFFUCODER_TRAINER_FLAVOUR=cpu`` the CPU trainer (``run-local --runner docker`` sets both);
the checked-in IR is compiled with neither set.
"""

from diffucoder.images import image_ref, trainer_target

TOOLS_IMAGE = image_ref("tools")  # data steps, run control, registration: CPU only
TRAINER_IMAGE = image_ref(trainer_target())  # training and evaluation: CUDA + DeepSpeed (or CPU)
