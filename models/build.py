"""The Keras models of the activity recogniser, rebuilt from configuration.

The classifier takes a window tensor exactly as the lake stores it (``samples × 3`` values,
flattened sample by sample, in m/s²), standardises each axis with statistics frozen into the
model (and, when the settings ask for it, adds the magnitude channel of :mod:`models.features`,
or reads the window's spectrum instead), passes it through the stacked encoder layers
``encoder_0 … encoder_{k-1}`` and a softmax head ``activity``. Each encoder layer is pretrained
on its own as a denoising autoencoder (:func:`build_autoencoder`) whose ``encoder`` weights are
then copied into the classifier.
A saved model with neither option needs nothing but Keras to load; one with either also
needs :mod:`models.features` imported, which :meth:`Registry.load_model` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from common.settings import ModelSettings

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Everything needed to rebuild the classifier: small, JSON-able and picklable."""

    input_dim: int
    classes: tuple[str, ...]
    encoder_units: tuple[int, ...]
    activation: str
    noise_stddev: float
    dropout: float
    axis_mean: tuple[float, float, float]
    axis_std: tuple[float, float, float]
    # the magnitude channel's statistics; None: no magnitude channel (the default, and every
    # model saved before 2026-11-24)
    magnitude_mean: float | None = None
    magnitude_std: float | None = None
    # the spectrum features' statistics; None: the encoders read the samples (every model saved
    # before 2026-11-24)
    spectrum_mean: tuple[float, ...] | None = None
    spectrum_std: tuple[float, ...] | None = None

    @classmethod
    def from_settings(
        cls,
        settings: ModelSettings,
        *,
        input_dim: int,
        classes: Sequence[str],
        axis_mean: Sequence[float],
        axis_std: Sequence[float],
        magnitude: Sequence[float] | None = None,
        spectrum: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> ModelSpec:
        """``magnitude``: (mean, std) of the acceleration's magnitude, when the settings ask
        for that channel; ``spectrum``: (means, stds) of the spectrum features, when the
        settings ask for them (:func:`models.spectrum.spectrum_moments`)."""
        if input_dim % 3:
            raise ValueError(f"a window tensor has 3 axes per sample; input_dim {input_dim} is not")
        if settings.magnitude_channel and magnitude is None:
            raise ValueError("magnitude_channel is on: give the magnitude's (mean, std)")
        spectrum_mean = spectrum_std = None
        if settings.input_features == "spectrum":
            if spectrum is None:
                raise ValueError("input_features is 'spectrum': give its features' (means, stds)")
            spectrum_mean = tuple(float(v) for v in spectrum[0])
            spectrum_std = tuple(max(float(v), 1e-6) for v in spectrum[1])
        mean, std = magnitude if settings.magnitude_channel else (None, None)  # type: ignore[misc]
        return cls(
            input_dim=input_dim,
            classes=tuple(classes),
            encoder_units=tuple(settings.encoder_units),
            activation=settings.activation,
            noise_stddev=settings.noise_stddev,
            dropout=settings.dropout,
            axis_mean=tuple(float(v) for v in axis_mean),  # type: ignore[arg-type]
            axis_std=tuple(max(float(v), 1e-6) for v in axis_std),  # type: ignore[arg-type]
            magnitude_mean=None if mean is None else float(mean),
            magnitude_std=None if std is None else max(float(std), 1e-6),
            spectrum_mean=spectrum_mean,
            spectrum_std=spectrum_std,
        )

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> ModelSpec:
        fields = {**document, "classes": tuple(document["classes"])}
        for name in ("encoder_units", "axis_mean", "axis_std"):
            fields[name] = tuple(document[name])
        for name in ("spectrum_mean", "spectrum_std"):
            if document.get(name) is not None:
                fields[name] = tuple(document[name])
        return cls(**fields)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def without_statistics(self) -> ModelSpec:
        """This spec with neutral statistics (means 0, stds 1): everything that shapes a model
        without its normaliser, the same for every run of one configuration."""

        def neutral(values: tuple[float, ...] | float | None, value: float) -> Any:
            if values is None:
                return None
            return (value,) * len(values) if isinstance(values, tuple) else value

        return replace(
            self, axis_mean=(0.0, 0.0, 0.0), axis_std=(1.0, 1.0, 1.0),
            magnitude_mean=neutral(self.magnitude_mean, 0.0),
            magnitude_std=neutral(self.magnitude_std, 1.0),
            spectrum_mean=neutral(self.spectrum_mean, 0.0),
            spectrum_std=neutral(self.spectrum_std, 1.0),
        )  # fmt: skip

    def layer_input_dim(self, layer: int) -> int:
        """Width of what encoder layer ``layer`` reads."""
        if layer:
            return self.encoder_units[layer - 1]
        if self.spectrum_mean is not None:
            return len(self.spectrum_mean)
        return self.input_dim // 3 * (3 if self.magnitude_mean is None else 4)


def _normaliser(spec: ModelSpec) -> keras.layers.Layer:
    if spec.spectrum_mean is not None and spec.spectrum_std is not None:
        from models.features import WindowSpectrum

        return WindowSpectrum(samples=spec.input_dim // 3, feature_mean=spec.spectrum_mean,
                              feature_std=spec.spectrum_std, name="normalise")  # fmt: skip
    if spec.magnitude_mean is None:
        # Keras' own layer, as before the channel existed: such a model loads anywhere
        import keras

        samples = spec.input_dim // 3
        mean = np.tile(np.asarray(spec.axis_mean, np.float32), samples)
        variance = np.tile(np.square(np.asarray(spec.axis_std, np.float32)), samples)
        return keras.layers.Normalization(mean=mean, variance=variance, name="normalise")
    from models.features import WindowFeatures

    return WindowFeatures(
        samples=spec.input_dim // 3, axis_mean=spec.axis_mean, axis_std=spec.axis_std,
        magnitude_mean=spec.magnitude_mean, magnitude_std=spec.magnitude_std, name="normalise",
    )  # fmt: skip


def build_normaliser(spec: ModelSpec) -> keras.Model:
    """Window tensors → what encoder layer 0 reads, with the spec's statistics; no weights."""
    import keras

    inputs = keras.Input((spec.input_dim,), name="window_tensor")
    return keras.Model(inputs, _normaliser(spec)(inputs), name="normaliser")


def _inputs(spec: ModelSpec, normalise: bool) -> tuple[Any, Any]:
    """(the model's input, what its first encoder reads): window tensors through the
    normaliser, or with ``normalise=False`` features already normalised (build_normaliser)."""
    import keras

    if not normalise:
        features = keras.Input((spec.layer_input_dim(0),), name="features")
        return features, features
    inputs = keras.Input((spec.input_dim,), name="window_tensor")
    return inputs, _normaliser(spec)(inputs)


def _encoders(spec: ModelSpec, hidden: Any, depth: int) -> Any:
    import keras

    for layer in range(depth):
        units = spec.encoder_units[layer]
        hidden = keras.layers.Dense(units, activation=spec.activation, name=f"encoder_{layer}")(
            hidden
        )
    return hidden


def build_classifier(spec: ModelSpec, *, normalise: bool = True) -> keras.Model:
    """Normalise → stacked encoders → softmax over ``spec.classes``.

    ``normalise=False``: the same model without its normaliser, reading normalised features;
    its weights are the same list (the normaliser has none), and its shape depends on no
    statistics.
    """
    import keras

    inputs, hidden = _inputs(spec, normalise)
    hidden = _encoders(spec, hidden, len(spec.encoder_units))
    if spec.dropout:
        hidden = keras.layers.Dropout(spec.dropout, name="dropout")(hidden)
    outputs = keras.layers.Dense(len(spec.classes), activation="softmax", name="activity")(hidden)
    return keras.Model(inputs, outputs, name="activity_classifier")


def build_encoder_stack(spec: ModelSpec, depth: int, *, normalise: bool = True) -> keras.Model:
    """The normaliser (unless ``normalise=False``) and the first ``depth`` encoder layers: what
    layer ``depth`` learns from.

    Its layers carry the classifier's names, so weights copy across by name.
    """
    import keras

    inputs, hidden = _inputs(spec, normalise)
    return keras.Model(inputs, _encoders(spec, hidden, depth), name=f"encoder_stack_{depth}")


def build_autoencoder(spec: ModelSpec, layer: int) -> keras.Model:
    """The denoising autoencoder that pretrains encoder layer ``layer``.

    Input: the features the layer reads; it corrupts them with Gaussian noise (training only),
    encodes them (``encoder``, the layer's future weights) and decodes them linearly
    (``decoder``) back to the clean input.
    """
    import keras

    width = spec.layer_input_dim(layer)
    inputs = keras.Input((width,), name="features")
    hidden = inputs
    if spec.noise_stddev:
        hidden = keras.layers.GaussianNoise(spec.noise_stddev, name="corrupt")(hidden)
    code = keras.layers.Dense(spec.encoder_units[layer], activation=spec.activation, name="encoder")
    decoder = keras.layers.Dense(width, name="decoder")
    return keras.Model(inputs, decoder(code(hidden)), name=f"autoencoder_{layer}")


def copy_encoder(autoencoder: keras.Model, classifier: keras.Model, layer: int) -> None:
    """Put a pretrained autoencoder's encoder weights into the classifier's ``encoder_<layer>``."""
    classifier.get_layer(f"encoder_{layer}").set_weights(
        autoencoder.get_layer("encoder").get_weights()
    )


def sync_encoders(classifier: keras.Model, stack: keras.Model) -> None:
    """Copy the classifier's encoder weights into a stack built by :func:`build_encoder_stack`."""
    for layer in stack.layers:
        if layer.name.startswith("encoder_"):
            layer.set_weights(classifier.get_layer(layer.name).get_weights())
