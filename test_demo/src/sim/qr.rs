//! Mini-program codes for `getwxacodeunlimit`: a real QR code (WeChat draws a round "sun
//! code"; a square QR is what can be drawn here) encoding appid, page, scene and env, as a
//! grayscale PNG of the requested width.

use qrcode::{Color, EcLevel, QrCode};

/// A page that exists in no published version (answers 41030 when check_path is on).
pub const UNPUBLISHED_PAGE: &str = "pages/unpublished";

/// The characters WeChat allows in `scene`.
pub fn scene_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$&'()*+,/:;=?@-._~".contains(c)
}

/// What the code encodes.
pub fn wxacode_content(appid: &str, page: &str, scene: &str, env: &str) -> String {
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("appid", appid)
        .append_pair("page", page)
        .append_pair("scene", scene)
        .append_pair("env_version", env)
        .finish();
    format!("https://mp.weixin.qq.com/a/wxacode?{q}")
}

/// Renders `content` as a `width` × `width` grayscale PNG with a quiet zone.
pub fn render_png(content: &str, width: u32) -> anyhow::Result<Vec<u8>> {
    let code = QrCode::with_error_correction_level(content.as_bytes(), EcLevel::M)?;
    let modules = code.width();
    let colors = code.to_colors();
    let quiet = 4usize;
    let total = modules + 2 * quiet;
    let w = width as usize;
    let mut pixels = vec![255u8; w * w];
    for y in 0..w {
        let my = y * total / w;
        for x in 0..w {
            let mx = x * total / w;
            let dark = my >= quiet
                && mx >= quiet
                && my < quiet + modules
                && mx < quiet + modules
                && colors
                    .get((my - quiet) * modules + (mx - quiet))
                    .is_some_and(|c| *c == Color::Dark);
            if dark {
                pixels[y * w + x] = 0;
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, width);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        writer.write_image_data(&pixels)?;
        writer.finish()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_header_and_size() {
        let png = render_png(&wxacode_content("wx1", "pages/a", "id=1", "release"), 430)
            .expect("renders");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let dec = png::Decoder::new(std::io::Cursor::new(png));
        let reader = dec.read_info().expect("decodes");
        assert_eq!(reader.info().width, 430);
        assert_eq!(reader.info().height, 430);
    }

    #[test]
    fn scene_chars() {
        assert!("a-Z_9!#$&'()*+,/:;=?@.~".chars().all(scene_char_ok));
        assert!(!scene_char_ok('%'));
        assert!(!scene_char_ok(' '));
        assert!(!scene_char_ok('中'));
    }
}
