//! How frames become the model's input, decided once at split time: the size from the model's
//! own input shape, normalization and crop from the command line, else the model's metadata
//! (`preprocess.mean`, `preprocess.std`, `preprocess.crop`), else TF-slim's defaults. A bundle
//! split at the wrong size or normalization scores every frame wrongly without a word, so what
//! the model states wins over defaults and a contradiction is an error.

use crate::onnx::Dim;
use nap_runtime::bundle::{ChannelOrder, InputSpec};
use std::fmt;
use tract_onnx::pb::ModelProto;

/// Input side used when neither the model nor the user fixes it.
pub const DEFAULT_SIZE: u32 = 224;

/// Metadata keys a model may carry its preprocessing in (pixel units, R,G,B).
pub const MEAN_KEY: &str = "preprocess.mean";
/// See [`MEAN_KEY`].
pub const STD_KEY: &str = "preprocess.std";
/// Central crop as a fraction of the shorter side.
pub const CROP_KEY: &str = "preprocess.crop";

/// Normalization presets of the common training frameworks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// TensorFlow-slim: `(p - 127.5) / 127.5`.
    Tf,
    /// torchvision: ImageNet mean and std on `p / 255`.
    Torch,
}

impl Preset {
    fn spec(self) -> InputSpec {
        match self {
            Preset::Tf => InputSpec::TF,
            Preset::Torch => InputSpec::TORCH,
        }
    }
}

/// What the user asked for; each `None` leaves the choice to the model, then to the default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InputRequest {
    /// Side of the square input in pixels.
    pub size: Option<u32>,
    /// Normalization preset.
    pub preset: Option<Preset>,
    /// Per-channel mean in pixel units, R,G,B (over the preset and the metadata).
    pub mean: Option<[f32; 3]>,
    /// Per-channel std in pixel units, R,G,B.
    pub std: Option<[f32; 3]>,
    /// Central crop as a fraction of the shorter side.
    pub crop: Option<f32>,
    /// The model takes BGR input.
    pub bgr: bool,
}

impl From<InputSpec> for InputRequest {
    /// Everything stated: the model may only confirm it (a fixed input of another size is
    /// still an error).
    fn from(spec: InputSpec) -> Self {
        let (mut mean, mut std) = (spec.mean, spec.std);
        let bgr = spec.channel_order == ChannelOrder::Bgr;
        if bgr {
            mean.reverse();
            std.reverse();
        }
        InputRequest {
            size: Some(spec.size),
            preset: None,
            mean: Some(mean),
            std: Some(std),
            crop: Some(spec.crop_fraction),
            bgr,
        }
    }
}

/// Where a choice came from, least specific first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// Nobody said: the default.
    Default,
    /// The model: its fixed input shape or its metadata.
    Model,
    /// The command line.
    Given,
}

/// What the user gave, else what the model says, else the default.
fn choose<T>(given: Option<T>, model: Option<T>, default: T) -> (T, Origin) {
    match (given, model) {
        (Some(v), _) => (v, Origin::Given),
        (None, Some(v)) => (v, Origin::Model),
        (None, None) => (default, Origin::Default),
    }
}

/// The input a bundle records, and where each part came from.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedInput {
    /// What the bundle records.
    pub spec: InputSpec,
    /// Where the size came from.
    pub size: Origin,
    /// Where mean and std came from (the most specific source of the two).
    pub normalization: Origin,
    /// Where the crop came from.
    pub crop: Origin,
}

impl fmt::Display for ResolvedInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.spec;
        let size = match self.size {
            Origin::Given => "as given",
            Origin::Model => "the model's fixed input",
            Origin::Default => "default; the model does not fix it",
        };
        let from = |origin| match origin {
            Origin::Given => "as given",
            Origin::Model => "from the model's metadata",
            Origin::Default => "default",
        };
        let order = match s.channel_order {
            ChannelOrder::Rgb => "RGB",
            ChannelOrder::Bgr => "BGR",
        };
        write!(
            f,
            "{}x{} ({size}), {order} mean {} std {} ({}), crop {} ({})",
            s.size,
            s.size,
            channels(&s.mean),
            channels(&s.std),
            from(self.normalization),
            s.crop_fraction,
            from(self.crop),
        )
    }
}

/// `127.5` when the three channels agree, else `[123.7, 116.3, 103.5]`.
fn channels(values: &[f32; 3]) -> String {
    if values.iter().all(|v| *v == values[0]) {
        format!("{}", values[0])
    } else {
        format!("{values:?}")
    }
}

/// Why the model's input cannot be settled.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A `preprocess.*` metadata entry that does not read as what it must be.
    #[error("model metadata {key} = {value:?}: {reason}; give the value on the command line")]
    Metadata {
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// The input is not `[N, 3, H, W]`.
    #[error(
        "input {input:?} is {shape}; napctl feeds frames as [N, 3, H, W] (NCHW, three channels)"
    )]
    Layout {
        /// The graph input.
        input: String,
        /// Its declared shape.
        shape: String,
    },
    /// A fixed input that is not square.
    #[error("input {input:?} is fixed at {height}x{width}; napctl feeds square frames")]
    NotSquare {
        /// The graph input.
        input: String,
        /// Its height.
        height: usize,
        /// Its width.
        width: usize,
    },
    /// `--input-size` against a fixed input.
    #[error(
        "--input-size {given} contradicts input {input:?}, which is fixed at {fixed}x{fixed}; \
         leave --input-size out"
    )]
    SizeContradicts {
        /// The graph input.
        input: String,
        /// The size asked for.
        given: u32,
        /// The model's size.
        fixed: usize,
    },
}

/// Settles the input of `model`, whose image input is `input` with `shape` (`None` when the
/// file does not declare it).
pub fn resolve(
    request: &InputRequest,
    model: &ModelProto,
    input: &str,
    shape: Option<&[Dim]>,
) -> Result<ResolvedInput, InputError> {
    let (size, size_origin) = resolve_size(request.size, input, shape)?;
    let meta = Metadata::read(model)?;

    let preset = request.preset.map(Preset::spec);
    let (mut mean, mean_origin) = choose(
        request.mean.or(preset.map(|p| p.mean)),
        meta.mean,
        InputSpec::TF.mean,
    );
    let (mut std, std_origin) = choose(
        request.std.or(preset.map(|p| p.std)),
        meta.std,
        InputSpec::TF.std,
    );
    let (crop, crop_origin) = choose(request.crop, meta.crop, InputSpec::TF.crop_fraction);
    let channel_order = if request.bgr {
        mean.reverse();
        std.reverse();
        ChannelOrder::Bgr
    } else {
        ChannelOrder::Rgb
    };
    Ok(ResolvedInput {
        spec: InputSpec {
            size,
            crop_fraction: crop,
            channel_order,
            mean,
            std,
        },
        size: size_origin,
        normalization: mean_origin.max(std_origin),
        crop: crop_origin,
    })
}

/// The side from a fixed `[N, 3, S, S]` input, else the request, else [`DEFAULT_SIZE`].
fn resolve_size(
    given: Option<u32>,
    input: &str,
    shape: Option<&[Dim]>,
) -> Result<(u32, Origin), InputError> {
    let fallback = choose(given, None, DEFAULT_SIZE);
    let Some(shape) = shape else {
        return Ok(fallback);
    };
    let layout = || InputError::Layout {
        input: input.to_owned(),
        shape: crate::onnx::graph::shape_string(Some(shape)),
    };
    let [_, channels, height, width] = shape else {
        return Err(layout());
    };
    if channels.fixed().is_some_and(|c| c != 3) {
        return Err(layout());
    }
    let fixed = match (height.fixed(), width.fixed()) {
        (Some(h), Some(w)) if h != w => {
            return Err(InputError::NotSquare {
                input: input.to_owned(),
                height: h,
                width: w,
            });
        }
        // One side fixed fixes the other: frames are square.
        (Some(side), _) | (None, Some(side)) => side,
        (None, None) => return Ok(fallback),
    };
    match given {
        Some(g) if g as usize != fixed => Err(InputError::SizeContradicts {
            input: input.to_owned(),
            given: g,
            fixed,
        }),
        _ => u32::try_from(fixed)
            .ok()
            .filter(|s| *s > 0)
            .map(|s| (s, Origin::Model))
            .ok_or_else(layout),
    }
}

/// The `preprocess.*` entries of a model's metadata, each checked.
#[derive(Default)]
struct Metadata {
    mean: Option<[f32; 3]>,
    std: Option<[f32; 3]>,
    crop: Option<f32>,
}

impl Metadata {
    fn read(model: &ModelProto) -> Result<Metadata, InputError> {
        let mut meta = Metadata::default();
        for entry in &model.metadata_props {
            let value = entry.value.as_str();
            match entry.key.as_str() {
                MEAN_KEY => {
                    let mean = per_channel(MEAN_KEY, value)?;
                    if mean.iter().any(|m| !(0.0..=255.0).contains(m)) {
                        return Err(bad(MEAN_KEY, value, "a mean outside 0..255 pixel units"));
                    }
                    meta.mean = Some(mean);
                }
                STD_KEY => {
                    let std = per_channel(STD_KEY, value)?;
                    // A std under one pixel unit is a value meant for p / 255: read in pixel
                    // units it would silently blow every input up 255-fold.
                    if std.iter().any(|s| *s < 1.0) {
                        return Err(bad(
                            STD_KEY,
                            value,
                            "a std under 1; napctl reads it in pixel units (0..255), not on p / 255",
                        ));
                    }
                    meta.std = Some(std);
                }
                CROP_KEY => {
                    let crop = number(CROP_KEY, value, value.trim())?;
                    if !(crop > 0.0 && crop <= 1.0) {
                        return Err(bad(CROP_KEY, value, "a crop fraction outside (0, 1]"));
                    }
                    meta.crop = Some(crop);
                }
                _ => {}
            }
        }
        Ok(meta)
    }
}

/// One value for all channels, or three (R,G,B), separated by commas or spaces, optionally
/// in brackets.
fn per_channel(key: &'static str, value: &str) -> Result<[f32; 3], InputError> {
    let inner = value
        .trim()
        .trim_start_matches(['[', '('])
        .trim_end_matches([']', ')']);
    let parts = inner
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(|p| number(key, value, p))
        .collect::<Result<Vec<_>, _>>()?;
    match parts[..] {
        [v] => Ok([v; 3]),
        [r, g, b] => Ok([r, g, b]),
        _ => Err(bad(
            key,
            value,
            &format!("{} numbers; expected 1 or 3 (R,G,B)", parts.len()),
        )),
    }
}

fn number(key: &'static str, value: &str, part: &str) -> Result<f32, InputError> {
    part.parse::<f32>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| bad(key, value, &format!("{part:?} is not a number")))
}

fn bad(key: &'static str, value: &str, reason: &str) -> InputError {
    InputError::Metadata {
        key,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::StringStringEntryProto;

    fn model(meta: &[(&str, &str)]) -> ModelProto {
        ModelProto {
            metadata_props: meta
                .iter()
                .map(|(k, v)| StringStringEntryProto {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
            ..ModelProto::default()
        }
    }

    fn shape(h: Dim, w: Dim) -> Vec<Dim> {
        vec![Dim::Symbol("N".into()), Dim::Fixed(3), h, w]
    }

    fn resolve_with(
        request: &InputRequest,
        meta: &[(&str, &str)],
        shape: Option<&[Dim]>,
    ) -> Result<ResolvedInput, InputError> {
        resolve(request, &model(meta), "input", shape)
    }

    #[test]
    fn a_fixed_input_decides_the_size() {
        let fixed = shape(Dim::Fixed(160), Dim::Fixed(160));
        let r = resolve_with(&InputRequest::default(), &[], Some(&fixed)).unwrap();
        assert_eq!((r.spec.size, r.size), (160, Origin::Model));
        let agreeing = InputRequest {
            size: Some(160),
            ..InputRequest::default()
        };
        assert_eq!(
            resolve_with(&agreeing, &[], Some(&fixed))
                .unwrap()
                .spec
                .size,
            160
        );
        let contradicting = InputRequest {
            size: Some(224),
            ..InputRequest::default()
        };
        let e = resolve_with(&contradicting, &[], Some(&fixed)).unwrap_err();
        assert!(matches!(
            e,
            InputError::SizeContradicts {
                given: 224,
                fixed: 160,
                ..
            }
        ));
        assert!(e.to_string().contains("--input-size 224"), "{e}");
    }

    #[test]
    fn a_symbolic_input_takes_the_request_or_the_default() {
        let free = shape(Dim::Symbol("H".into()), Dim::Symbol("W".into()));
        let r = resolve_with(&InputRequest::default(), &[], Some(&free)).unwrap();
        assert_eq!((r.spec.size, r.size), (DEFAULT_SIZE, Origin::Default));
        let r = resolve_with(&InputRequest::default(), &[], None).unwrap();
        assert_eq!((r.spec.size, r.size), (DEFAULT_SIZE, Origin::Default));
        let given = InputRequest {
            size: Some(192),
            ..InputRequest::default()
        };
        let r = resolve_with(&given, &[], Some(&free)).unwrap();
        assert_eq!((r.spec.size, r.size), (192, Origin::Given));
    }

    #[test]
    fn inputs_that_are_not_square_rgb_nchw_are_refused() {
        let request = InputRequest::default();
        let oblong = shape(Dim::Fixed(160), Dim::Fixed(224));
        assert!(matches!(
            resolve_with(&request, &[], Some(&oblong)),
            Err(InputError::NotSquare {
                height: 160,
                width: 224,
                ..
            })
        ));
        let nhwc = vec![
            Dim::Fixed(1),
            Dim::Fixed(224),
            Dim::Fixed(224),
            Dim::Fixed(3),
        ];
        let e = resolve_with(&request, &[], Some(&nhwc)).unwrap_err();
        assert!(e.to_string().contains("[1, 224, 224, 3]"), "{e}");
        let rank3 = vec![Dim::Fixed(3), Dim::Fixed(224), Dim::Fixed(224)];
        assert!(matches!(
            resolve_with(&request, &[], Some(&rank3)),
            Err(InputError::Layout { .. })
        ));
    }

    #[test]
    fn metadata_is_used_unless_overridden() {
        let meta = [(MEAN_KEY, "127"), (STD_KEY, "128"), (CROP_KEY, "0.9")];
        let r = resolve_with(&InputRequest::default(), &meta, None).unwrap();
        assert_eq!((r.spec.mean, r.spec.std), ([127.0; 3], [128.0; 3]));
        assert_eq!(r.spec.crop_fraction, 0.9);
        assert_eq!((r.normalization, r.crop), (Origin::Model, Origin::Model));

        let preset = InputRequest {
            preset: Some(Preset::Torch),
            crop: Some(1.0),
            ..InputRequest::default()
        };
        let r = resolve_with(&preset, &meta, None).unwrap();
        assert_eq!(
            (r.spec.mean, r.spec.std),
            (InputSpec::TORCH.mean, InputSpec::TORCH.std)
        );
        assert_eq!((r.spec.crop_fraction, r.crop), (1.0, Origin::Given));

        // Only the mean given: the std still comes from the model.
        let mean_only = InputRequest {
            mean: Some([1.0, 2.0, 3.0]),
            bgr: true,
            ..InputRequest::default()
        };
        let r = resolve_with(&mean_only, &meta, None).unwrap();
        assert_eq!((r.spec.mean, r.spec.std), ([3.0, 2.0, 1.0], [128.0; 3]));
        assert_eq!(r.spec.channel_order, ChannelOrder::Bgr);
        assert_eq!(r.normalization, Origin::Given);
    }

    #[test]
    fn without_flags_or_metadata_the_default_is_tf_slim() {
        let r = resolve_with(&InputRequest::default(), &[("other", "x")], None).unwrap();
        assert_eq!(r.spec, InputSpec::TF);
        assert_eq!(
            (r.size, r.normalization, r.crop),
            (Origin::Default, Origin::Default, Origin::Default)
        );
    }

    #[test]
    fn metadata_reads_one_or_three_numbers_in_common_spellings() {
        for (text, expected) in [
            ("127.5", [127.5; 3]),
            ("123.675,116.28,103.53", [123.675, 116.28, 103.53]),
            ("[123.675, 116.28, 103.53]", [123.675, 116.28, 103.53]),
            ("(1 2 3)", [1.0, 2.0, 3.0]),
        ] {
            assert_eq!(per_channel(MEAN_KEY, text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn bad_metadata_is_an_error_naming_the_key() {
        for (key, value, why) in [
            (MEAN_KEY, "1,2", "2 numbers"),
            (MEAN_KEY, "red", "\"red\" is not a number"),
            (MEAN_KEY, "300", "outside 0..255"),
            (STD_KEY, "0.229,0.224,0.225", "pixel units"),
            (STD_KEY, "NaN", "not a number"),
            (CROP_KEY, "1.5", "outside (0, 1]"),
            (CROP_KEY, "", "not a number"),
        ] {
            let e = resolve_with(&InputRequest::default(), &[(key, value)], None).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains(key) && text.contains(why),
                "{key}={value}: {text}"
            );
        }
    }

    #[test]
    fn a_spec_converts_to_a_request_that_resolves_to_itself() {
        let bgr = InputSpec {
            size: 96,
            channel_order: ChannelOrder::Bgr,
            mean: [1.0, 2.0, 3.0],
            ..InputSpec::TORCH
        };
        for spec in [InputSpec::TF, InputSpec::TORCH, bgr] {
            let r = resolve_with(&spec.into(), &[(MEAN_KEY, "9")], None).unwrap();
            assert_eq!(r.spec, spec);
        }
    }
}
