//! The UniFFI generator at the library's UniFFI version: writes the Kotlin, Swift and
//! Python sources for the built library (see bindings/README.md).

fn main() {
    uniffi::uniffi_bindgen_main()
}
