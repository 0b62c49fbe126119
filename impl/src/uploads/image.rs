//! What an uploaded image is, by its bytes, and the same image without its metadata.
//!
//! The type is read from the bytes, never from a file name or `Content-Type`: a PNG that is
//! really HTML is refused. Metadata goes (a phone's JPEG carries the GPS position it was
//! taken at in EXIF): JPEG keeps only what decoding needs (the JFIF header, ICC colour profile,
//! Adobe's colour transform and the image's own segments), PNG only its critical chunks and
//! those that change how it looks. `img-parts` reads and writes the containers; nothing is
//! decoded or re-encoded, so the picture itself is byte for byte what was sent.

use bytes::Bytes;
use img_parts::jpeg::{Jpeg, markers};
use img_parts::png::Png;

/// Largest upload taken.
pub const MAX_BYTES: usize = 2 * 1024 * 1024;
/// Largest side in pixels: anything bigger is no photo from a phone, and could be a
/// decompression bomb for whoever shows it.
pub const MAX_SIDE: u32 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageKind {
    Jpeg,
    Png,
}

impl ImageKind {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("the image is larger than {} bytes", MAX_BYTES)]
    TooLarge,
    #[error("only JPEG and PNG images are taken (this is neither, by its content)")]
    NotAnImage,
    #[error("the image is damaged: {0}")]
    Damaged(String),
    #[error("the image must be 1 to {MAX_SIDE} pixels on each side")]
    BadSize,
}

/// An image ready to store: its kind, its size in pixels, and its bytes without metadata.
#[derive(Debug)]
pub struct CleanImage {
    pub kind: ImageKind,
    pub width: u32,
    pub height: u32,
    pub bytes: Bytes,
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The kind of image `bytes` hold, by their first bytes.
pub fn sniff(bytes: &[u8]) -> Option<ImageKind> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageKind::Jpeg)
    } else if bytes.starts_with(PNG_SIGNATURE) {
        Some(ImageKind::Png)
    } else {
        None
    }
}

/// Checks an upload and strips its metadata.
pub fn clean(bytes: Bytes) -> Result<CleanImage, ImageError> {
    if bytes.len() > MAX_BYTES {
        return Err(ImageError::TooLarge);
    }
    match sniff(&bytes).ok_or(ImageError::NotAnImage)? {
        ImageKind::Jpeg => clean_jpeg(bytes),
        ImageKind::Png => clean_png(bytes),
    }
}

fn damaged(e: impl std::fmt::Display) -> ImageError {
    ImageError::Damaged(e.to_string())
}

fn sized(kind: ImageKind, width: u32, height: u32, bytes: Bytes) -> Result<CleanImage, ImageError> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(ImageError::BadSize);
    }
    Ok(CleanImage {
        kind,
        width,
        height,
        bytes,
    })
}

/// Start-of-frame markers: every SOFn but DHT (C4), JPG (C8) and DAC (CC), which share
/// the range.
fn is_sof(marker: u8) -> bool {
    (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

fn clean_jpeg(bytes: Bytes) -> Result<CleanImage, ImageError> {
    let mut jpeg = Jpeg::from_bytes(bytes).map_err(damaged)?;
    // APP0 JFIF, APP2 ICC profile, APP14 Adobe colour transform: needed to show the
    // colours right. Every other APPn (EXIF and XMP in APP1, IPTC in APP13, makers' own)
    // and comments are metadata.
    jpeg.segments_mut().retain(|s| {
        let m = s.marker();
        let app = (markers::APP0..=markers::APP15).contains(&m);
        !(m == markers::COM || app && !matches!(m, markers::APP0 | markers::APP2 | markers::APP14))
    });
    let (width, height) = jpeg
        .segments()
        .iter()
        .find(|s| is_sof(s.marker()))
        .and_then(|s| {
            let c = s.contents();
            (c.len() >= 5).then(|| {
                (
                    u32::from(u16::from_be_bytes([c[3], c[4]])),
                    u32::from(u16::from_be_bytes([c[1], c[2]])),
                )
            })
        })
        .ok_or_else(|| damaged("no frame header"))?;
    if !jpeg.segments().iter().any(|s| s.marker() == markers::SOS) {
        return Err(damaged("no image data"));
    }
    sized(ImageKind::Jpeg, width, height, jpeg.encoder().bytes())
}

/// Chunks that carry text, dates or EXIF: what a PNG may say about where and when.
const PNG_METADATA: [&[u8; 4]; 5] = [b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"];

fn clean_png(bytes: Bytes) -> Result<CleanImage, ImageError> {
    let mut png = Png::from_bytes(bytes).map_err(damaged)?;
    png.chunks_mut()
        .retain(|c| !PNG_METADATA.contains(&&c.kind()));
    let chunks = png.chunks();
    let ihdr = chunks
        .first()
        .filter(|c| &c.kind() == b"IHDR")
        .map(|c| c.contents())
        .filter(|c| c.len() == 13)
        .ok_or_else(|| damaged("IHDR is not the first chunk"))?;
    let width = u32::from_be_bytes([ihdr[0], ihdr[1], ihdr[2], ihdr[3]]);
    let height = u32::from_be_bytes([ihdr[4], ihdr[5], ihdr[6], ihdr[7]]);
    if !chunks.iter().any(|c| &c.kind() == b"IDAT")
        || chunks.last().map(|c| c.kind()) != Some(*b"IEND")
    {
        return Err(damaged("no image data or no end"));
    }
    sized(ImageKind::Png, width, height, png.encoder().bytes())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 1x1 PNG (written by the `png` crate) with a `tEXt` chunk inserted after IHDR.
    pub fn png_with_text(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, 1, 1);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().expect("header");
            w.write_image_data(&[255, 0, 0]).expect("data");
        }
        let mut png = Png::from_bytes(out.into()).expect("png");
        let chunk =
            img_parts::png::PngChunk::new(*b"tEXt", Bytes::from(format!("Comment\0{text}")));
        png.chunks_mut().insert(1, chunk);
        png.encoder().bytes().to_vec()
    }

    /// A minimal JPEG: SOI, APP1 EXIF (carrying `gps`), a frame header of 8x4, an empty
    /// scan, EOI. Enough for the container; no decoder is involved.
    pub fn jpeg_with_exif(gps: &str) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        let seg = |v: &mut Vec<u8>, marker: u8, body: &[u8]| {
            v.extend_from_slice(&[0xFF, marker]);
            v.extend_from_slice(&u16::try_from(body.len() + 2).expect("len").to_be_bytes());
            v.extend_from_slice(body);
        };
        seg(&mut v, 0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        let mut exif = b"Exif\0\0".to_vec();
        exif.extend_from_slice(gps.as_bytes());
        seg(&mut v, 0xE1, &exif);
        seg(&mut v, 0xFE, b"a comment");
        // SOF0: precision 8, height 4, width 8, one component.
        seg(&mut v, 0xC0, &[8, 0, 4, 0, 8, 1, 1, 0x11, 0]);
        // SOS: one component; then a few bytes of scan data and EOI.
        seg(&mut v, 0xDA, &[1, 1, 0, 0, 0x3F, 0]);
        v.extend_from_slice(&[0x12, 0x34, 0xFF, 0xD9]);
        v
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn jpeg_loses_exif_and_comments_and_keeps_its_picture() {
        let src = jpeg_with_exif("GPS 39.9042N 116.4074E");
        let img = clean(Bytes::from(src.clone())).expect("clean");
        assert_eq!((img.kind, img.width, img.height), (ImageKind::Jpeg, 8, 4));
        assert!(!contains(&img.bytes, b"GPS"), "EXIF gone");
        assert!(!contains(&img.bytes, b"a comment"), "comment gone");
        assert!(contains(&img.bytes, b"JFIF"), "JFIF header kept");
        assert!(img.bytes.ends_with(&[0x12, 0x34, 0xFF, 0xD9]), "scan kept");
        let again = clean(img.bytes.clone()).expect("clean again");
        assert_eq!(again.bytes, img.bytes, "stripping is stable");
    }

    #[test]
    fn png_loses_text_chunks() {
        let src = png_with_text("taken at home");
        assert!(contains(&src, b"taken at home"));
        let img = clean(Bytes::from(src)).expect("clean");
        assert_eq!((img.kind, img.width, img.height), (ImageKind::Png, 1, 1));
        assert!(!contains(&img.bytes, b"taken at home"));
    }

    #[test]
    fn what_is_not_an_image_is_refused() {
        let html = b"<html><script>alert(1)</script></html>".to_vec();
        assert_eq!(clean(Bytes::from(html)).err(), Some(ImageError::NotAnImage));
        assert_eq!(clean(Bytes::new()).err(), Some(ImageError::NotAnImage));
        let mut fake_png = PNG_SIGNATURE.to_vec();
        fake_png.extend_from_slice(b"<html></html>");
        assert!(matches!(
            clean(Bytes::from(fake_png)).err(),
            Some(ImageError::Damaged(_))
        ));
        let big = vec![0xFFu8; MAX_BYTES + 1];
        assert_eq!(clean(Bytes::from(big)).err(), Some(ImageError::TooLarge));
        let mut truncated = jpeg_with_exif("x");
        truncated.truncate(30);
        assert!(clean(Bytes::from(truncated)).is_err());
    }
}
