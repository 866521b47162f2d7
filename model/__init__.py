"""vem.model: the PyTorch VeM (docs/paper.md §§2-5).

Every size comes from `vem.runtime.config.VemConfig` (``get_config("paper")`` or ``"demo"``).
Components and their equations:

- `timing.TimingMLP`                 f_s, f_d: continuous seconds -> timing embedding (§2)
- `conditioning.ConditionBuilder`    Eq. 6: six tokens per storyboard, null tokens for CFG
- `attention.SGCrossAttention`       Eqs. 7-8: storyboard-masked cross-attention
- `attention.storyboard_mask`        Eq. 7 at the top latent resolution
- `unet.TUNet`                       latent diffusion backbone (§5) with SG-CAtt and the adapter
- `adapter.TBAdapter`                Eq. 10: z <- z + gamma * z + beta
- `aligner.TBAligner`                Eq. 9: ResNet(2+1)D-style transition-beat aligner (§4)
- `visual.VisualEncoder`, `StyleHead` storyboard visual features and global tags (§2)
- `vae.MelVAE`, `vocoder.HiFiGAN`    AudioLDM 2's VAE and HiFi-GAN layouts (§5)
- `vem.VeM`                          the container; `save_checkpoint` / `load_checkpoint`
- `audioldm2.load_audioldm2`         AudioLDM 2's VAE, vocoder and T-UNet (diffusers layout) into the
                                     paper config (docs/audioldm2.md)
- `pipeline.generate`                torch eager reference generation
"""

from .aligner import TBAligner, resample_to_latent
from .attention import SGCrossAttention, storyboard_mask
from .conditioning import ConditionBuilder
from .pipeline import Generation, generate
from .unet import TUNet
from .vem import VeM, load_checkpoint, save_checkpoint

__all__ = [
    "ConditionBuilder",
    "Generation",
    "SGCrossAttention",
    "TBAligner",
    "TUNet",
    "VeM",
    "generate",
    "load_checkpoint",
    "resample_to_latent",
    "save_checkpoint",
    "storyboard_mask",
]
