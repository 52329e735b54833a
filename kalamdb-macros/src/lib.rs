//! `#[system_table]`: turns a plain serde struct into a KalamDB system table.
//!
//! The entry point is thin: parse the struct into a validated [`model::TableDef`],
//! then emit one trait implementation with [`codegen::expand`]. Errors are
//! spanned at the user's field or struct, never at the macro's own code.

use proc_macro::TokenStream;

mod codegen;
mod model;

/// Makes a struct a system table.
///
/// ```ignore
/// /// Users who can log in.
/// #[system_table(name = "users")]
/// #[derive(Serialize, Deserialize)]
/// pub struct User {
///     /// Stable id of the user.
///     #[column(key)]
///     pub user_id: String,
///     /// Argon2 hash; stored, never returned by SELECT.
///     #[column(hidden)]
///     pub password_hash: String,
/// }
/// ```
///
/// Generates `impl ::kalamdb_model::SystemTable` with the table name, the
/// column family (`system_<name>`), the key, the Arrow schema (doc comments
/// become column comments) and rows → `RecordBatch`.
#[proc_macro_attribute]
pub fn system_table(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let input = syn::parse_macro_input!(input as syn::ItemStruct);
    match model::TableDef::parse(args, input) {
        Ok((def, item)) => {
            let generated = codegen::expand(&def);
            quote::quote!(#item #generated).into()
        }
        Err(err) => err.to_compile_error().into(),
    }
}
