//! The console: `write(1, …)`, as `solo5_console_write`.

use crate::sys;

/// Writes all of `buf` to the console, retrying short writes.
pub fn write_all(mut buf: &[u8]) {
    while !buf.is_empty() {
        let n = sys::write(1, buf);
        if n <= 0 {
            return;
        }
        buf = &buf[n as usize..];
    }
}

/// A `core::fmt::Write` sink for the console.
pub struct Console;

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        write_all(s.as_bytes());
        Ok(())
    }
}

/// Formats into a small stack buffer first, so that one line is one `write`.
pub struct LineBuf {
    buf: [u8; 512],
    len: usize,
}

impl LineBuf {
    /// An empty buffer.
    pub const fn new() -> Self {
        LineBuf {
            buf: [0; 512],
            len: 0,
        }
    }

    /// Writes the buffer out.
    pub fn flush(&mut self) {
        write_all(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl Default for LineBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

/// Prints to the console, one `write` per call for lines under 512 bytes.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        let mut b = $crate::console::LineBuf::new();
        let _ = core::fmt::Write::write_fmt(&mut b, format_args!($($arg)*));
        b.flush();
    }};
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        let mut b = $crate::console::LineBuf::new();
        let _ = core::fmt::Write::write_fmt(&mut b, format_args!($($arg)*));
        let _ = core::fmt::Write::write_str(&mut b, "\n");
        b.flush();
    }};
}
