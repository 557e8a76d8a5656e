"""Figures (matplotlib, Agg backend, PNG): store montages and label histograms (:mod:`.stores`),
and the helpers every figure of the project uses for units and colour bars (:mod:`.style`)."""

from .stores import param_hist_figure, plot_param_hist, plot_samples, samples_figure
from .style import axis_label, colorbar, image_scale, label_units, save, value_text

__all__ = ["axis_label", "colorbar", "image_scale", "label_units", "param_hist_figure", "plot_param_hist",
           "plot_samples", "samples_figure", "save", "value_text"]
