//! G.711 mu-law (ITU-T G.711), as Asterisk's `.ulaw` files hold it: one byte a sample, 8 kHz.

const BIAS: i32 = 0x84;
const CLIP: i32 = 32635;

/// Encodes one linear 16-bit sample.
pub fn encode_ulaw(sample: i16) -> u8 {
    let mut pcm = i32::from(sample);
    let sign = if pcm < 0 {
        pcm = -pcm;
        0x80
    } else {
        0
    };
    let pcm = pcm.min(CLIP) + BIAS;
    // Exponent: position of the highest set bit above bit 7.
    let exponent = (31 - (pcm as u32).leading_zeros()).saturating_sub(7).min(7) as i32;
    let mantissa = (pcm >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// Decodes one mu-law byte to linear 16-bit.
pub fn decode_ulaw(byte: u8) -> i16 {
    let u = !byte;
    let sign = u & 0x80;
    let exponent = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    let value = if sign != 0 { -magnitude } else { magnitude };
    value as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_points() {
        // Values from the G.711 tables: 0xFF and 0x7F are the two zeros.
        assert_eq!(decode_ulaw(0xFF), 0);
        assert_eq!(decode_ulaw(0x7F), 0);
        assert_eq!(decode_ulaw(0x80), 32124);
        assert_eq!(decode_ulaw(0x00), -32124);
        assert_eq!(encode_ulaw(0), 0xFF);
        assert_eq!(encode_ulaw(32767), 0x80);
        assert_eq!(encode_ulaw(-32768), 0x00);
    }

    #[test]
    fn every_code_round_trips() {
        for byte in 0..=255u8 {
            let back = encode_ulaw(decode_ulaw(byte));
            // 0x7F (negative zero) encodes back as 0xFF (positive zero).
            if byte == 0x7F {
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, byte, "code {byte:#04x}");
            }
        }
    }
}

/// Decodes one A-law byte to linear 16-bit (ITU-T G.711).
pub fn decode_alaw(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let sign = a & 0x80;
    let exponent = i32::from((a >> 4) & 0x07);
    let mantissa = i32::from(a & 0x0F);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    (if sign != 0 { magnitude } else { -magnitude }) as i16
}

#[cfg(test)]
mod alaw_tests {
    use super::decode_alaw;

    #[test]
    fn alaw_reference_points() {
        // From the G.711 A-law table: 0xD5 and 0x55 are the smallest magnitudes.
        assert_eq!(decode_alaw(0xD5), 8);
        assert_eq!(decode_alaw(0x55), -8);
        assert_eq!(decode_alaw(0xAA), 32256);
        assert_eq!(decode_alaw(0x2A), -32256);
    }
}
