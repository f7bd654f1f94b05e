"""Image-quality metric handlers for the group-action evaluation (SSIM; PSNR and RMSE come from monai.handlers).

The evaluation protocol (intensities in [0, 1]) uses, side by side::

    from monai.handlers import PeakSignalToNoiseRatio, RootMeanSquaredError, from_engine
    from monai_galr.handlers import StructuralSimilarity

    psnr = PeakSignalToNoiseRatio(max_val=1.0, output_transform=from_engine(["pred", "label"]))
    ssim = StructuralSimilarity(spatial_dims=2, output_transform=from_engine(["pred", "label"]))
    rmse = RootMeanSquaredError(output_transform=from_engine(["pred", "label"]))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from monai.handlers.ignite_metric import IgniteMetricHandler
from monai.metrics import SSIMMetric
from monai.metrics.regression import KernelType
from monai.utils import MetricReduction, ensure_tuple_rep, look_up_option

__all__ = ["StructuralSimilarity"]


class StructuralSimilarity(IgniteMetricHandler):
    """Computes SSIM (MONAI's :py:class:`monai.metrics.SSIMMetric`) per image and averages over batches/iterations.

    ``y_pred`` and ``y`` are batch-first ``(B, C, H, W[, D])`` tensors (or lists of channel-first tensors) with
    intensities in ``[0, data_range]``; every spatial size must be at least ``win_size`` (MONAI's SSIM uses a
    valid convolution, no padding).

    Args:
        spatial_dims: 2 or 3.
        data_range: the intensity range of the images (1.0 for the [0, 1] protocol).
        kernel_type: ``"gaussian"`` or ``"uniform"``.
        win_size: window size (odd), an int or one per spatial dim; 11 is the usual choice, use 7 for 28x28.
        kernel_sigma: standard deviation of the Gaussian window.
        k1: stability constant of the luminance term.
        k2: stability constant of the contrast term.
        reduction: how the per-image values are reduced (MONAI's ``MetricReduction``), default mean.
        output_transform: extracts ``(y_pred, y)`` from ``engine.state.output``, for example
            ``monai.handlers.from_engine(["pred", "label"])``.
        save_details: store the per-image values in ``engine.state.metric_details[name]``.

    Raises:
        ValueError: ``spatial_dims`` not 2 or 3, ``data_range`` not positive, ``win_size`` not a positive odd
            int (or one per spatial dim), or an unknown ``kernel_type``.
        TypeError: a non-numeric ``data_range`` or ``win_size``.

    Example::

        ssim = StructuralSimilarity(spatial_dims=3, win_size=7, output_transform=from_engine(["pred", "label"]))
        ssim.attach(evaluator, "ssim")
    """

    def __init__(
        self,
        spatial_dims: int,
        data_range: float = 1.0,
        kernel_type: KernelType | str = KernelType.GAUSSIAN,
        win_size: int | Sequence[int] = 11,
        kernel_sigma: float | Sequence[float] = 1.5,
        k1: float = 0.01,
        k2: float = 0.03,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        if isinstance(spatial_dims, bool) or spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
        if isinstance(data_range, bool) or not isinstance(data_range, (int, float)):
            raise TypeError(f"data_range must be a positive number, got {type(data_range).__name__}.")
        if not data_range > 0:
            raise ValueError(f"data_range must be a positive number, got {data_range}.")
        sizes = ensure_tuple_rep(win_size, spatial_dims) if not isinstance(win_size, Sequence) else tuple(win_size)
        if len(sizes) != spatial_dims:
            raise ValueError(f"win_size must be an int or {spatial_dims} ints, got {win_size!r}.")
        for w in sizes:
            if isinstance(w, bool) or not isinstance(w, int):
                raise TypeError(f"win_size must hold ints, got {type(w).__name__} in {win_size!r}.")
            if w < 1 or w % 2 == 0:
                raise ValueError(f"win_size must be a positive odd int, got {win_size!r}.")
        kernel_type = look_up_option(kernel_type, KernelType)
        metric_fn = SSIMMetric(
            spatial_dims=spatial_dims,
            data_range=float(data_range),
            kernel_type=kernel_type,
            win_size=sizes,
            kernel_sigma=kernel_sigma,
            k1=k1,
            k2=k2,
            reduction=reduction,
        )
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
