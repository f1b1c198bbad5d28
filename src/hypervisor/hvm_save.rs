//! The HVM context blob (`xc_domain_hvm_getcontext` / `_setcontext`): Xen's save records
//! back to back, each a `struct hvm_save_descriptor` (u16 typecode, u16 instance, u32 length)
//! and its body, the HEADER first and END last (xen-project/xen
//! `xen/include/public/hvm/save.h` and `arch-x86/hvm/save.h` at c447b73). One reader and
//! writer of descriptors for the real backend (which edits contexts) and the simulated host
//! (which checks them).

/// `HVM_SAVE_CODE(END)`.
pub const END: u16 = 0;
/// `HVM_SAVE_CODE(HEADER)`.
pub const HEADER: u16 = 1;
/// `HVM_SAVE_CODE(CPU)`.
pub const CPU: u16 = 2;
/// `HVM_SAVE_CODE(MTRR)`.
pub const MTRR: u16 = 14;
/// `HVM_SAVE_CODE_MAX` in Xen 4.17.
pub const CODE_MAX: u16 = 20;
/// `HVM_FILE_MAGIC`, the HEADER's first field.
pub const FILE_MAGIC: u32 = 0x5438_1286;
/// `HVM_FILE_VERSION`, the HEADER's second.
pub const FILE_VERSION: u32 = 1;
/// `sizeof(struct hvm_save_header)`.
pub const HEADER_BYTES: usize = 24;
/// `struct hvm_save_descriptor`: typecode u16, instance u16, length u32.
pub const DESCRIPTOR_BYTES: usize = 8;

/// A descriptor for a record of `length` bytes.
pub fn descriptor(typecode: u16, instance: u16, length: usize) -> [u8; DESCRIPTOR_BYTES] {
    let mut d = [0u8; DESCRIPTOR_BYTES];
    d[0..2].copy_from_slice(&typecode.to_le_bytes());
    d[2..4].copy_from_slice(&instance.to_le_bytes());
    #[expect(
        clippy::cast_possible_truncation,
        reason = "record bodies are the size of one HVM save struct, far below 4 GiB"
    )]
    d[4..8].copy_from_slice(&(length as u32).to_le_bytes());
    d
}

/// One record: `(typecode, instance, body)`.
pub type SaveRecord<'a> = (u16, u16, &'a [u8]);

/// The records of `ctx` in order, END included, each or why the blob breaks off there: a
/// descriptor cut short, or a length past the blob. Nothing is read after END or an error.
pub fn records(ctx: &[u8]) -> impl Iterator<Item = Result<SaveRecord<'_>, String>> + '_ {
    let mut off = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done || off == ctx.len() {
            return None;
        }
        let Some(d) = ctx.get(off..off + DESCRIPTOR_BYTES) else {
            done = true;
            return Some(Err(format!("truncated descriptor at byte {off}")));
        };
        let typecode = u16::from_le_bytes([d[0], d[1]]);
        let instance = u16::from_le_bytes([d[2], d[3]]);
        let length = u32::from_le_bytes([d[4], d[5], d[6], d[7]]);
        let start = off + DESCRIPTOR_BYTES;
        let body = usize::try_from(length)
            .ok()
            .and_then(|l| ctx.get(start..start.checked_add(l)?));
        let Some(body) = body else {
            done = true;
            return Some(Err(format!(
                "record {typecode} at byte {off}: length {length} overruns the context"
            )));
        };
        off = start + body.len();
        done = typecode == END;
        Some(Ok((typecode, instance, body)))
    })
}
