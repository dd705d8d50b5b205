//! Protobuf wire primitives: varints, keys, length-delimited fields.

pub(super) const VARINT: u8 = 0;
pub(super) const FIXED64: u8 = 1;
pub(super) const LEN: u8 = 2;
pub(super) const FIXED32: u8 = 5;

/// A cursor over one message's bytes. Every read checks bounds; errors are short phrases
/// the caller places in context.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn varint(&mut self) -> Result<u64, &'static str> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else { return Err("truncated varint") };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err("varint overflows 64 bits");
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes")
    }

    /// A field key: (field number, wire type).
    pub fn key(&mut self) -> Result<(u32, u8), &'static str> {
        let k = self.varint()?;
        let tag = u32::try_from(k >> 3).map_err(|_| "field number out of range")?;
        if tag == 0 {
            return Err("field number 0");
        }
        Ok((tag, (k & 7) as u8))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let len = usize::try_from(self.varint()?).map_err(|_| "length out of range")?;
        let end = self.pos.checked_add(len).ok_or("length out of range")?;
        let b = self.buf.get(self.pos..end).ok_or("truncated length-delimited field")?;
        self.pos = end;
        Ok(b)
    }

    pub fn fixed64(&mut self) -> Result<u64, &'static str> {
        let b = self.buf.get(self.pos..self.pos + 8).ok_or("truncated fixed64")?;
        self.pos += 8;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Skip a field of an unknown number (Kubernetes adds fields; old readers ignore them).
    pub fn skip(&mut self, wire_type: u8) -> Result<(), &'static str> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.fixed64().map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => {
                self.buf.get(self.pos..self.pos + 4).ok_or("truncated fixed32")?;
                self.pos += 4;
                Ok(())
            }
            _ => Err("unsupported wire type (groups are not used by Kubernetes)"),
        }
    }
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn put_key(out: &mut Vec<u8>, tag: u32, wire_type: u8) {
    put_varint(out, (u64::from(tag) << 3) | u64::from(wire_type));
}

pub(super) fn put_bytes(out: &mut Vec<u8>, tag: u32, b: &[u8]) {
    put_key(out, tag, LEN);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// int32 and int64 are both sign-extended to 64 bits on the wire.
pub(super) fn put_int(out: &mut Vec<u8>, tag: u32, v: i64) {
    put_key(out, tag, VARINT);
    put_varint(out, v as u64);
}

/// Write a length-delimited field whose content `body` appends to `out`.
pub(super) fn put_nested<E>(
    out: &mut Vec<u8>,
    tag: u32,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    put_key(out, tag, LEN);
    let start = out.len();
    body(out)?;
    let len = out.len() - start;
    let mut prefix = Vec::with_capacity(5);
    put_varint(&mut prefix, len as u64);
    out.splice(start..start, prefix);
    Ok(())
}
