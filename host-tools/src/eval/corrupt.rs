//! Pseudo-OOD frames made from in-distribution ones by strong corruptions, as the NAP paper's
//! appendix does to choose `w` when no real OOD data is at hand: the corrupted copy keeps the
//! camera's framing and colours but destroys the object evidence a familiar frame has.
//!
//! Every corruption is deterministic (noise is seeded by the image content), so the feature
//! cache can hold the corrupted copies too.

use image::{RgbImage, imageops};

/// One corruption at a fixed, strong severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// Additive Gaussian noise, sigma 100 of 255.
    Noise,
    /// Gaussian blur with sigma 3% of the shorter side.
    Blur,
    /// JPEG re-encoding at quality 4.
    Jpeg,
    /// Contrast cut to 8% around the mean grey.
    Contrast,
    /// Pixelation to blocks of 1/14 of the shorter side.
    Pixelate,
    /// The image cut into a 12 x 12 grid of tiles, shuffled: local texture kept, objects broken.
    Shuffle,
}

impl Corruption {
    /// All corruptions, in the order they are assigned to images.
    pub const ALL: [Corruption; 6] = [
        Corruption::Noise,
        Corruption::Blur,
        Corruption::Jpeg,
        Corruption::Contrast,
        Corruption::Pixelate,
        Corruption::Shuffle,
    ];

    /// Short name, also the cache variant (with a severity version, so changing a severity never
    /// reuses old entries).
    pub const fn name(self) -> &'static str {
        match self {
            Corruption::Noise => "noise",
            Corruption::Blur => "blur",
            Corruption::Jpeg => "jpeg",
            Corruption::Contrast => "contrast",
            Corruption::Pixelate => "pixelate",
            Corruption::Shuffle => "shuffle",
        }
    }

    /// The feature cache's variant string for this corruption.
    pub fn cache_variant(self) -> String {
        format!("{}-v2", self.name())
    }

    /// The corrupted copy of `image`; `seed` makes the noise reproducible.
    pub fn apply(self, image: &RgbImage, seed: u64) -> RgbImage {
        let (w, h) = image.dimensions();
        let short = w.min(h).max(1);
        match self {
            Corruption::Noise => {
                let mut rng = SplitMix(seed);
                let mut out = image.clone();
                for p in out.iter_mut() {
                    let v = f32::from(*p) + 100.0 * rng.gaussian();
                    *p = v.round().clamp(0.0, 255.0) as u8;
                }
                out
            }
            Corruption::Blur => imageops::blur(image, 0.03 * short as f32),
            Corruption::Jpeg => {
                let mut bytes = Vec::new();
                let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 4);
                match image.write_with_encoder(encoder) {
                    Ok(()) => image::load_from_memory(&bytes)
                        .map(|d| d.to_rgb8())
                        .unwrap_or_else(|_| image.clone()),
                    // An image the encoder refuses (e.g. too large) stays as it is.
                    Err(_) => image.clone(),
                }
            }
            Corruption::Contrast => {
                let n = image.as_raw().len().max(1) as f64;
                let mean = image.as_raw().iter().map(|&v| f64::from(v)).sum::<f64>() / n;
                let mut out = image.clone();
                for p in out.iter_mut() {
                    let v = mean + 0.08 * (f64::from(*p) - mean);
                    *p = v.round().clamp(0.0, 255.0) as u8;
                }
                out
            }
            Corruption::Pixelate => {
                let block = (short / 14).max(1);
                let (sw, sh) = (w.div_ceil(block).max(1), h.div_ceil(block).max(1));
                let small = imageops::resize(image, sw, sh, imageops::FilterType::Triangle);
                let mut out = RgbImage::new(w, h);
                for (x, y, p) in out.enumerate_pixels_mut() {
                    *p = *small.get_pixel((x / block).min(sw - 1), (y / block).min(sh - 1));
                }
                out
            }
            Corruption::Shuffle => {
                const GRID: u32 = 12;
                let (tw, th) = ((w / GRID).max(1), (h / GRID).max(1));
                let mut order: Vec<u32> = (0..GRID * GRID).collect();
                let mut rng = SplitMix(seed);
                // Fisher-Yates.
                for i in (1..order.len()).rev() {
                    let j = (rng.next() % (i as u64 + 1)) as usize;
                    order.swap(i, j);
                }
                let mut out = image.clone();
                for (dst, &src) in order.iter().enumerate() {
                    let (dx, dy) = ((dst as u32 % GRID) * tw, (dst as u32 / GRID) * th);
                    let (sx, sy) = ((src % GRID) * tw, (src / GRID) * th);
                    let tile = imageops::crop_imm(image, sx, sy, tw, th).to_image();
                    imageops::replace(&mut out, &tile, i64::from(dx), i64::from(dy));
                }
                out
            }
        }
    }
}

/// A corruption name that is not one of [`Corruption::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown corruption {0:?}; expected one of noise, blur, jpeg, contrast, pixelate, shuffle")]
pub struct UnknownCorruption(pub String);

impl std::str::FromStr for Corruption {
    type Err = UnknownCorruption;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Corruption::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownCorruption(s.into()))
    }
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A small, fast, seedable generator: reproducible noise without a dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f32 {
        ((self.next() >> 40) as f32 + 1.0) / (1u64 << 24) as f32
    }

    /// Standard normal, by Box-Muller.
    fn gaussian(&mut self) -> f32 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient() -> RgbImage {
        RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 128])
        })
    }

    #[test]
    fn corruptions_keep_size_change_pixels_and_are_deterministic() {
        let img = gradient();
        for c in Corruption::ALL {
            let a = c.apply(&img, 42);
            assert_eq!(a.dimensions(), img.dimensions(), "{c}");
            assert_ne!(a, img, "{c} changed nothing");
            assert_eq!(a, c.apply(&img, 42), "{c} is not deterministic");
        }
        assert_ne!(
            Corruption::Noise.apply(&img, 1),
            Corruption::Noise.apply(&img, 2)
        );
    }

    #[test]
    fn contrast_and_pixelate_do_what_they_say() {
        let img = gradient();
        let spread = |i: &RgbImage| {
            let r: Vec<u8> = i.pixels().map(|p| p[0]).collect();
            r.iter().max().unwrap() - r.iter().min().unwrap()
        };
        assert!(spread(&Corruption::Contrast.apply(&img, 0)) <= spread(&img) / 4);
        // Blocks of 48 / 14 = 3 pixels: pixels within one block are equal.
        let p = Corruption::Pixelate.apply(&img, 0);
        assert_eq!(p.get_pixel(0, 0), p.get_pixel(2, 2));
    }
}
