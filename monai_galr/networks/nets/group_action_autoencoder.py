"""The group-action autoencoder: MONAI's ``AutoEncoder`` with a bounded latent, the ALD split and a latent action."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Act
from monai.networks.nets import AutoEncoder
from monai.networks.utils import eval_mode
from monai.utils import look_up_option
from torch import nn

from monai_galr.networks.blocks.actions import ACTIONS, GridRotation, LearnedAction
from monai_galr.networks.blocks.ald import ALD
from monai_galr.networks.blocks.clamp import StraightThroughClamp
from monai_galr.networks.blocks.harmonic import (
    INVARIANT_VIEWS,
    HarmonicAction,
    HarmonicAnalysis,
    HarmonicSynthesis,
    HybridAction,
    HybridAnalysis,
    HybridSynthesis,
)

__all__ = ["GroupActionAutoEncoder", "RotatedReconstruction", "parameter_groups"]

_LATENT_ACTS = ("tanh", "none")
_OUTPUT_ACTS = ("sigmoid", "clamp", "none")


class GroupActionAutoEncoder(AutoEncoder):
    """Encoder-decoder whose spatial latent carries a learned rotation action on its varying channels.

    ``encode`` (MONAI's encoder stack, then a 1x1 convolution to ``latent_channels`` and a bounded activation),
    ``split`` (ALD), ``apply_action`` (``Phi_R(z) = [Phi^v_R(z_v); z_i]``; not ``act``, which MONAI's
    ``AutoEncoder`` already uses for the activation type) and ``decode`` (MONAI's decoder stack, then the
    output activation).  ``forward(image)`` returns the plain reconstruction ``decode(encode(image))``.
    The same class serves 2D (``(B, C, H, W)``) and 3D (``(B, C, H, W, D)``) images.

    Args:
        spatial_dims: 2 or 3.
        in_channels / out_channels: image channels.
        channels: encoder widths, one per stage (decoder mirrors them).
        strides: stride of each stage; the latent grid is the image grid divided by ``prod(strides)``.
        latent_channels: number of latent channels ``L`` (default ``channels[-1]``).
        kernel_size, up_kernel_size, num_res_units, act, norm, dropout, bias: as in MONAI's ``AutoEncoder``.
        partition: ``"learned"`` (ALD), ``"manual"`` (fixed ``varying_fraction``) or ``"all"``.
        action: ``"harmonic"`` (the latent is the coefficient tensor ``(B, L, radii, M)`` of the feature map on polar
            rings / spherical shells, acted on exactly by the group's representation; see
            :mod:`monai_galr.networks.blocks.harmonic`), ``"grid"`` (rotate the spatial latent grid: the paper's
            action, lossy between grid points) or ``"learned"`` (``LearnedAction``).
        spatial_size: the image size ``(H, W[, D])``; required by ``action="harmonic"`` (its rings are fixed on the
            latent grid ``spatial_size / prod(strides)``, and the decoder renders onto that grid).
        harmonic_radii: number of rings / shells.
        harmonic_modes: 2D, Fourier modes ``0..modes-1`` per ring (``M = 2 modes - 1`` numbers).
        harmonic_lmax: 3D, spherical-harmonic degrees ``0..lmax`` per shell (``M = (lmax + 1)^2``; at most 32).
        harmonic_angles: angular samples per ring (2D, default ``4 * modes``) or the s2 grid's beta resolution (3D,
            default ``2 (lmax + 1)``).
        harmonic_max_radius: outer radius in latent voxels (default: the half-diagonal, reaching the corners).
        harmonic_invariant: how the harmonic latent holds the invariant channels: ``"harmonic"`` (the same ring /
            shell coefficients as the varying ones) or ``"map"`` (the hybrid latent: every channel carries its
            coefficients and its Cartesian feature map, ``(B, L, S*M + G)``; the decoder reads the coefficients of
            the varying channels and the map of the invariant ones, so a fixed background keeps its resolution;
            needs ``mask_gate="ste"``).
        harmonic_map_stride: the hybrid latent's map view is the feature map average-pooled by this factor (1: the
            map itself; it must divide the latent grid), e.g. strides ``[1, 1]`` for the rings with the map at half
            the resolution; only with ``harmonic_invariant="map"``.
        tau: ALD threshold in (0, 1).
        varying_fraction: varying share of the channels for ``partition="manual"``.
        alpha_init / alpha_init_std: initial ALD logits (``alpha_init_at``: ``"threshold"``, an offset from the
            threshold logit; ``"zero"``, absolute).
        mask_gate / mask_temperature: the ALD gate (``"ste"``: the paper's deterministic straight-through mask;
            ``"gumbel"``: a sampled hard-concrete gate in training) and logit temperature (see ``ALD``).
        mask_switch_images: 0 (the straight-through estimator: the reconstruction reaches each logit through the
            linearisation at the current mask) or ``N >= 1``: in the training pass the first ``N`` images of the batch
            are also decoded once per latent channel with that channel's state switched and once as they are (no
            gradient, the network in eval mode: batch norm on its running statistics, which these decodes leave
            unchanged), returned as ``"pred_switch"`` and ``"pred_switch_base"``, and the rotated prediction is rendered from the hard mask without the straight-through
            gradient; ``GroupActionLoss`` then gives each logit the reconstruction error's actual change between its
            two states (a secant in place of the tangent).  Needs a learned partition, a channel-wise action (grid,
            harmonic) and ``mask_gate="ste"``; eval passes are unchanged.  Costs ``N * (L + 1)`` extra decoder passes
            per step.
        latent_activation: ``"tanh"`` (bounded latent: the scale anchor the stop-gradient latent losses need)
            or ``"none"``.
        output_activation: ``"sigmoid"`` (intensities in (0, 1)), ``"clamp"`` (``StraightThroughClamp`` to
            [0, 1]: an empty background is exactly 0, the gradient passes unchanged) or ``"none"``.
        action_mode / action_padding: interpolation and padding of the grid action.
        action_hidden_channels / action_layers: size of the learned action.

    Raises:
        ValueError: ``spatial_dims`` not 2 or 3, unknown ``partition`` / ``action`` / activations, ``tau`` outside
            (0, 1), ``channels`` and ``strides`` of different lengths.

    Example::

        >>> net = GroupActionAutoEncoder(2, 1, 1, channels=(16, 32), strides=(2, 1), latent_channels=16)
        >>> z = net.encode(torch.rand(4, 1, 32, 32))           # (4, 16, 16, 16)
        >>> y = net.decode(net.apply_action(z, rotation))                 # rotation: (4, 2, 2)
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int],
        strides: Sequence[int],
        latent_channels: int | None = None,
        kernel_size: int = 3,
        up_kernel_size: int = 3,
        num_res_units: int = 0,
        act: tuple | str | None = Act.PRELU,
        norm: tuple | str = "instance",
        dropout: tuple | str | float | None = None,
        bias: bool = True,
        partition: str = "learned",
        action: str = "grid",
        tau: float = 0.5,
        varying_fraction: float = 0.5,
        alpha_init: float = 0.0,
        alpha_init_std: float = 0.0,
        mask_gate: str = "ste",
        mask_temperature: float = 1.0,
        alpha_init_at: str = "threshold",
        mask_switch_images: int = 0,
        latent_activation: str = "tanh",
        output_activation: str = "sigmoid",
        action_mode: str = "bilinear",
        action_padding: str = "border",
        action_hidden_channels: int = 64,
        action_layers: int = 2,
        spatial_size: Sequence[int] | None = None,
        harmonic_radii: int = 8,
        harmonic_modes: int = 16,
        harmonic_lmax: int = 6,
        harmonic_angles: int | None = None,
        harmonic_max_radius: float | None = None,
        harmonic_invariant: str = "harmonic",
        harmonic_map_stride: int = 1,
    ) -> None:
        if isinstance(spatial_dims, bool) or spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
        if len(channels) == 0 or len(channels) != len(strides):
            raise ValueError(
                f"channels and strides must be non-empty and of equal length, got {len(channels)} and {len(strides)}."
            )
        self.latent_channels = int(latent_channels if latent_channels is not None else channels[-1])
        self.latent_activation = look_up_option(latent_activation, _LATENT_ACTS)
        self.output_activation = look_up_option(output_activation, _OUTPUT_ACTS)
        super().__init__(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=channels,
            strides=strides,
            kernel_size=kernel_size,
            up_kernel_size=up_kernel_size,
            num_res_units=num_res_units,
            act=act,
            norm=norm,
            dropout=dropout,
            bias=bias,
        )
        self.action_name = look_up_option(action, ACTIONS)
        self.ald = ALD(
            self.latent_channels,
            partition=partition,
            tau=tau,
            varying_fraction=varying_fraction,
            alpha_init=alpha_init,
            alpha_init_std=alpha_init_std,
            gate=mask_gate,
            temperature=mask_temperature,
            alpha_init_at=alpha_init_at,
        )
        self.spatial_size = None if spatial_size is None else tuple(int(n) for n in spatial_size)
        if harmonic_invariant not in INVARIANT_VIEWS:
            raise ValueError(f"harmonic_invariant must be one of {INVARIANT_VIEWS}, got {harmonic_invariant!r}.")
        self.harmonic_invariant = harmonic_invariant
        self.harmonic_map_stride = harmonic_map_stride
        if harmonic_map_stride != 1 and self.harmonic_invariant != "map":
            raise ValueError(
                f"harmonic_map_stride {harmonic_map_stride!r} pools the map view of the hybrid latent and needs "
                f"harmonic_invariant 'map', got harmonic_invariant {harmonic_invariant!r} (leave it at 1)."
            )
        if self.harmonic_invariant == "map":
            if self.action_name != "harmonic":
                raise ValueError(
                    f"harmonic_invariant 'map' (the hybrid latent) needs action 'harmonic', got action {action!r}."
                )
            if self.ald.alpha is not None and self.ald.gate != "ste":
                raise ValueError(
                    f"harmonic_invariant 'map' needs mask_gate 'ste' (the decoder reads each channel's view from the "
                    f"same deterministic mask as the action), got mask_gate {mask_gate!r}."
                )
        if isinstance(mask_switch_images, bool) or not isinstance(mask_switch_images, int) or mask_switch_images < 0:
            raise ValueError(f"mask_switch_images must be an int >= 0, got {mask_switch_images!r}.")
        if mask_switch_images and (self.ald.alpha is None or self.action_name not in ("grid", "harmonic")
                                   or self.ald.gate != "ste"):
            raise ValueError(
                f"mask_switch_images {mask_switch_images} (switched-channel decodes for the logits) needs partition "
                f"'learned', action 'grid' or 'harmonic' and mask_gate 'ste', got partition {partition!r}, action "
                f"{action!r}, mask_gate {mask_gate!r}; set mask_switch_images: 0."
            )
        self.mask_switch_images = mask_switch_images
        if self.action_name == "harmonic":
            self._build_harmonic(harmonic_radii, harmonic_modes, harmonic_lmax, harmonic_angles, harmonic_max_radius)
        elif self.action_name == "grid":
            self.action: nn.Module = GridRotation(spatial_dims, mode=action_mode, padding_mode=action_padding)
        else:
            self.action = LearnedAction(
                spatial_dims, self.latent_channels, hidden_channels=action_hidden_channels, num_layers=action_layers
            )

    def _build_harmonic(self, radii, modes, lmax, angles, max_radius) -> None:
        size = self.spatial_size
        if size is None or len(size) != self.dimensions:
            raise ValueError(
                f"action 'harmonic' needs spatial_size, the {self.dimensions} image sizes the rings are fixed on, "
                f"got {size!r}."
            )
        f = self.downsampling
        if any(n % f or n < f for n in size):
            raise ValueError(
                f"spatial_size spatial size {size} must be a positive multiple of the total stride {f} "
                f"(strides {tuple(self.strides)}); pad or resize the images."
            )
        latent_shape = tuple(n // f for n in size)
        degree = modes if self.dimensions == 2 else lmax
        geometry = (self.dimensions, latent_shape, radii, degree, angles, max_radius)
        if self.harmonic_invariant == "map":
            stride = self.harmonic_map_stride
            analysis = HybridAnalysis(*geometry, map_stride=stride)
            synthesis = HybridSynthesis(*geometry, mask=self.ald.mask, map_stride=stride)
            self.action = HybridAction(self.dimensions, degree, analysis.radii, analysis.map_shape)
        else:
            analysis, synthesis = HarmonicAnalysis(*geometry), HarmonicSynthesis(*geometry)
            self.action = HarmonicAction(self.dimensions, degree)
        self.encode.add_module("harmonic", analysis)
        decode = [("harmonic", synthesis)] + list(self.decode.named_children())
        self.decode = nn.Sequential(OrderedDict(decode))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        if not self.is_harmonic and prefix + "encode.harmonic.signature" in state_dict:
            error_msgs.append(
                f"the checkpoint was trained with action 'harmonic' (it holds {prefix}encode.harmonic.signature) but "
                f"this network's action is {self.action_name!r}; set action: harmonic and its harmonic_* entries."
            )
        elif self.is_harmonic:
            theirs = "map" if prefix + "encode.harmonic.invariant_map" in state_dict else "harmonic"
            if prefix + "encode.harmonic.signature" in state_dict and theirs != self.harmonic_invariant:
                error_msgs.append(
                    f"the checkpoint's harmonic latent holds the invariant channels as {theirs!r} but this network's "
                    f"harmonic_invariant is {self.harmonic_invariant!r}; set harmonic_invariant: {theirs}."
                )
                return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    @property
    def is_harmonic(self) -> bool:
        """True when the latent is harmonic coefficients ``(B, L, radii, M)`` rather than a spatial map (the hybrid
        latent: ``(B, L, radii * M + G)``, the coefficients then the feature map)."""
        return self.action_name == "harmonic"

    def latent_map(self, z: torch.Tensor) -> torch.Tensor:
        """The spatial feature map ``(B, L, *latent_grid)`` a latent stands for (for figures and magnitudes).

        A spatial latent is returned as it is; harmonic coefficients are rendered on the latent grid by the
        decoder's first step (the hybrid latent: the varying channels rendered, the invariant ones' map as held).
        """
        return self.decode.harmonic(z) if self.is_harmonic else z

    def latent_numel(self) -> int:
        """Numbers in one image's latent (needs ``spatial_size`` for every action)."""
        if self.spatial_size is None:
            raise ValueError("latent_numel needs the network's spatial_size.")
        with torch.no_grad():
            z = self.encode(torch.zeros(1, self.in_channels, *self.spatial_size, device=self._device()))
        return int(z[0].numel())

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def downsampling(self) -> int:
        """Factor between image and latent grid sizes (the product of ``strides``)."""
        f = 1
        for s in self.strides:
            f *= int(s)
        return f

    def _get_encode_module(self, in_channels: int, channels: Sequence[int], strides: Sequence[int]):
        encode, layer_channels = super()._get_encode_module(in_channels, channels, strides)
        encode.add_module(
            "latent",
            Convolution(self.dimensions, layer_channels, self.latent_channels, kernel_size=1, conv_only=True),
        )
        if self.latent_activation == "tanh":
            encode.add_module("latent_act", nn.Tanh())
        return encode, self.latent_channels

    def _get_decode_module(self, in_channels: int, channels: Sequence[int], strides: Sequence[int]):
        decode, layer_channels = super()._get_decode_module(in_channels, channels, strides)
        if self.output_activation == "sigmoid":
            decode.add_module("output_act", nn.Sigmoid())
        elif self.output_activation == "clamp":
            decode.add_module("output_act", StraightThroughClamp(0.0, 1.0))
        return decode, layer_channels

    def check_input(self, x: torch.Tensor, name: str = "image") -> None:
        """Raise ``ValueError`` when ``x`` is not ``(B, in_channels, *spatial)`` divisible by the strides."""
        if not isinstance(x, torch.Tensor) or x.ndim != self.dimensions + 2 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            axes = "H, W" if self.dimensions == 2 else "H, W, D"
            raise ValueError(f"{name} must have shape (B, {self.in_channels}, {axes}), got {shape}.")
        f = self.downsampling
        if any(int(s) % f or int(s) < f for s in x.shape[2:]):
            raise ValueError(
                f"{name} spatial size {tuple(x.shape[2:])} must be a positive multiple of the total stride {f} "
                f"(strides {tuple(self.strides)}); pad or resize the images."
            )
        if self.is_harmonic and tuple(int(s) for s in x.shape[2:]) != self.spatial_size:
            raise ValueError(
                f"{name} spatial size {tuple(x.shape[2:])} must equal the network's spatial_size {self.spatial_size} "
                "(the harmonic latent's rings are fixed on that grid); pad or resize the images."
            )

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_v, z_i)`` of the latent ``z`` ``(B, L, *latent_spatial)``."""
        return self.ald.split(z)

    def apply_action(self, z: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        """``Phi_R(z) = M * Phi^v_R(M * z) + (1 - M) * z`` for ``rotation`` ``(B, d, d)``."""
        m = self.ald.broadcast(self.ald.mask(), z)
        return m * self.action(m * z, rotation) + (1 - m) * z

    def forward(
        self, x: torch.Tensor, rotation: torch.Tensor | None = None, target: torch.Tensor | None = None
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Render ``x`` (``(B, C, *spatial)``) through the latent, optionally acted on by ``rotation``.

        - ``forward(x)``: the identity reconstruction ``decode(encode(x))``;
        - ``forward(x, rotation)``: the rotated prediction ``decode(apply_action(encode(x), rotation))``;
        - ``forward(x, rotation, target)``: the training step's tensors, as a dict with ``"pred"`` (the rotated
          prediction), ``"z"`` (``encode(x)``), ``"z_acted"`` (``apply_action(z, rotation)``), ``"z_target"``
          (``encode(target)``, computed without gradients: the stop-gradient; ``target = T_R x``), ``"mask"``
          (the ``(L,)`` ALD mask with its straight-through gradient) and, for the channel-wise actions (``grid``,
          ``harmonic``), ``"z_rotated"`` (``Phi^v_R(z)`` on every channel, varying or not: what
          ``GroupActionLoss(mask_gradient="two_sided")`` compares with ``z_target``); with ``mask_switch_images``
          in training mode also ``"pred_switch"`` (``(N, L, C, *spatial)``) and ``"pred_switch_base"`` (``(N, C,
          *spatial)``), see ``mask_switch_images``.

        Everything runs inside ``forward`` so that ``DistributedDataParallel`` sees the whole step.

        Raises:
            ValueError: ``x`` is not ``(B, in_channels, *spatial)`` with a spatial size divisible by the total
                stride (see ``check_input``), or ``target`` differs from ``x`` in shape.
        """
        self.check_input(x, "x")
        if rotation is None:
            return self.decode(self.encode(x))
        z = self.encode(x)
        if target is None:
            return self.decode(self.apply_action(z, rotation))
        if not isinstance(target, torch.Tensor) or target.shape != x.shape:
            shape = tuple(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
            raise ValueError(f"target must have the shape of x {tuple(x.shape)}, got {shape}.")
        with torch.no_grad():
            z_target = self.encode(target)
        mask = self.ald.mask()
        m = self.ald.broadcast(mask, z)
        out = {"z": z, "z_target": z_target, "mask": mask}
        if self.action_is_channelwise:
            # every channel acted on: the same z_acted bit for bit (each channel is rotated on its own), and the
            # loss can compare each channel's equivariance error with its change under rotation (mask_gradient)
            out["z_rotated"] = self.action(z, rotation)
            z_acted = m * out["z_rotated"] + (1 - m) * z
        else:
            z_acted = m * self.action(m * z, rotation) + (1 - m) * z
        out["z_acted"] = z_acted
        if self.mask_switch_images and self.training:
            out["pred"], out["pred_switch_base"], out["pred_switch"] = self._switched_predictions(
                z, out["z_rotated"], mask
            )
        else:
            out["pred"] = self.decode(z_acted)
        return out

    def _switched_predictions(
        self, z: torch.Tensor, z_rotated: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The prediction from the hard mask (no straight-through gradient); then, without gradients and with the
        network in eval mode, the first ``mask_switch_images`` images decoded with the current mask ``(N, C,
        *spatial)`` and with each channel's state switched ``(N, L, C, *spatial)``.

        Eval mode: batch-norm layers decode those few images with their running statistics, as the network is
        evaluated, and the ``N * (L + 1)`` extra decodes leave the statistics unchanged (in training mode each
        decode would normalise ``N`` images by their own statistics, a bias shared by every switch, and pull the
        running statistics towards the switched latents)."""
        hard = mask.detach()
        h = self.ald.broadcast(hard, z)
        with self.ald.use_mask(hard):
            pred = self.decode(h * z_rotated + (1 - h) * z)
        n = min(self.mask_switch_images, z.shape[0])
        z, z_rotated = z[:n].detach(), z_rotated[:n].detach()
        switched = []
        with eval_mode(self):
            with self.ald.use_mask(hard):
                base = self.decode(h * z_rotated + (1 - h) * z)
            for c in range(self.latent_channels):
                flip = hard.clone()
                flip[c] = 1 - flip[c]
                f = self.ald.broadcast(flip, z)
                with self.ald.use_mask(flip):
                    switched.append(self.decode(f * z_rotated + (1 - f) * z))
        return pred, base, torch.stack(switched, dim=1)

    @property
    def action_is_channelwise(self) -> bool:
        """True for ``grid`` and ``harmonic``: each latent channel is acted on by itself (``learned`` mixes them)."""
        return self.action_name in ("grid", "harmonic")


class RotatedReconstruction(nn.Module):
    """Wrap a trained network to render ``decode(apply_action(encode(x), R))`` for one fixed rotation ``R``.

    A single-tensor ``forward`` for inference configs, ``verify_net_in_out`` and TorchScript export.

    Args:
        network: a ``GroupActionAutoEncoder``.
        rotation: ``(d, d)`` or ``(1, d, d)`` rotation (see ``monai_galr.groups``).
    """

    def __init__(self, network: GroupActionAutoEncoder, rotation: torch.Tensor | Sequence) -> None:
        super().__init__()
        from monai_galr.groups import validate_rotation

        r = torch.as_tensor(rotation, dtype=torch.float32)
        if r.ndim == 2:
            r = r[None]
        validate_rotation(r, dim=network.dimensions, name="rotation")
        self.network = network
        self.register_buffer("rotation", r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.network.check_input(x, "x")
        r = self.rotation.to(x.dtype)
        if not self.network.is_harmonic:  # affine_grid (also in ONNX) needs one matrix per image
            r = r.expand(x.shape[0], -1, -1)
        # harmonic: one (1, d, d) rotation, its representation broadcast over the batch by the matrix product
        return self.network.decode(self.network.apply_action(self.network.encode(x), r))


def parameter_groups(
    network: torch.nn.Module, learning_rate: float, mask_learning_rate: float | None = None
) -> list[dict]:
    """Optimizer parameter groups: the ALD logits may learn at their own rate.

    The mask logits get one (Adam-normalized) gradient each per step while the encoder can re-assign the roles of
    channels much faster, so with a shared rate the logits barely leave their initial value; a larger
    ``mask_learning_rate`` lets the split settle.

    Args:
        network: a ``GroupActionAutoEncoder`` (``DataParallel``/``DDP`` wrappers are looked through).
        learning_rate: rate of every other parameter.
        mask_learning_rate: rate of ``ald.alpha`` (default: ``learning_rate``).

    Returns:
        a list of ``{"params": [...], "lr": ...}`` dicts for ``torch.optim`` (one group when the partition is
        fixed).
    """
    core = network
    while hasattr(core, "module") and isinstance(core.module, torch.nn.Module):
        core = core.module
    ald = getattr(core, "ald", None)
    alpha = getattr(ald, "alpha", None)
    if alpha is None:
        return [{"params": [p for p in network.parameters() if p.requires_grad], "lr": float(learning_rate)}]
    others = [p for p in network.parameters() if p is not alpha and p.requires_grad]
    mask_lr = float(learning_rate if mask_learning_rate is None else mask_learning_rate)
    return [{"params": others, "lr": float(learning_rate)}, {"params": [alpha], "lr": mask_lr}]
