//! Prints the Solo5 banner, a greeting and its command line; exits 0.
#![no_std]
#![no_main]

use solo5_rt::{entry, manifest, println, Ctx};

manifest!();
entry!(main);

fn main(ctx: &Ctx) -> i32 {
    solo5_rt::console::write_all(
        b"            |      ___|\n  __|  _ \\  |  _ \\ __ \\\n\\__ \\ (   | | (   |  ) |\n____/\\___/ _|\\___/ ____/\n",
    );
    println!("Hello, World\nCommand line is: '{}'", ctx.cmdline());
    0
}
