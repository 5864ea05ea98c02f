//! Images lose their metadata before anyone else can read them: a phone's
//! photo carries where it was taken (GPS), when, with which device, and
//! sometimes a thumbnail of what was cropped out. `img-parts` rewrites
//! the container without decoding the pixels (a 12-megapixel JPEG takes
//! about a millisecond, and no more memory than its bytes), keeping only
//! what drawing it needs: the colour profile, Adobe's colour transform,
//! and the orientation (stripped with the rest, a portrait photo would
//! show on its side), written back as a one-entry EXIF.

use bytes::Bytes;
use img_parts::jpeg::{markers, Jpeg};
use img_parts::png::Png;
use img_parts::webp::WebP;
use img_parts::ImageEXIF;

/// `bytes` (of type `mime`) without metadata. Types other than JPEG, PNG
/// and WebP are returned as they are (GIF holds no EXIF).
pub fn strip(mime: &str, bytes: Bytes) -> Result<Bytes, String> {
    match mime {
        "image/jpeg" => {
            let mut jpeg = Jpeg::from_bytes(bytes).map_err(|e| format!("not a JPEG: {e}"))?;
            let orientation = jpeg.exif().and_then(|tiff| orientation(&tiff));
            jpeg.segments_mut().retain(|segment| {
                let marker = segment.marker();
                // APP0 (JFIF), APP2 (ICC profile), APP14 (Adobe: how to
                // read CMYK) are kept; APP1 (EXIF, XMP), APP13 (IPTC), the
                // other APPn and comments go.
                !((markers::APP1..=markers::APP15).contains(&marker)
                    && marker != markers::APP2
                    && marker != markers::APP14)
                    && marker != markers::COM
            });
            if let Some(o) = orientation.filter(|o| *o != 1) {
                jpeg.set_exif(Some(orientation_exif(o)));
            }
            Ok(jpeg.encoder().bytes())
        }
        "image/png" => {
            let mut png = Png::from_bytes(bytes).map_err(|e| format!("not a PNG: {e}"))?;
            for chunk in [*b"eXIf", *b"tEXt", *b"zTXt", *b"iTXt", *b"tIME"] {
                png.remove_chunks_by_type(chunk);
            }
            Ok(png.encoder().bytes())
        }
        "image/webp" => {
            let mut webp = WebP::from_bytes(bytes).map_err(|e| format!("not a WebP: {e}"))?;
            webp.set_exif(None);
            webp.remove_chunks_by_id(img_parts::webp::CHUNK_XMP);
            Ok(webp.encoder().bytes())
        }
        _ => Ok(bytes),
    }
}

/// The EXIF orientation (1–8) in a TIFF block, read with `kamadak-exif`.
fn orientation(tiff: &[u8]) -> Option<u16> {
    let exif = exif::Reader::new().read_raw(tiff.to_vec()).ok()?;
    let field = exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)?;
    match field.value.get_uint(0)? {
        o @ 1..=8 => Some(o as u16),
        _ => None,
    }
}

/// A TIFF block holding one IFD entry, the orientation: big-endian header,
/// one entry (tag 0x0112, SHORT, count 1, the value left-aligned in the
/// four-byte field), no next IFD. 26 bytes, the whole of what is kept.
fn orientation_exif(orientation: u16) -> Bytes {
    let mut tiff = Vec::with_capacity(26);
    tiff.extend_from_slice(b"MM\x00\x2a\x00\x00\x00\x08");
    tiff.extend_from_slice(&1u16.to_be_bytes());
    tiff.extend_from_slice(&0x0112u16.to_be_bytes());
    tiff.extend_from_slice(&3u16.to_be_bytes());
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes());
    Bytes::from(tiff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_orientation_block_reads_back() {
        assert_eq!(orientation(&orientation_exif(6)), Some(6));
    }
}
