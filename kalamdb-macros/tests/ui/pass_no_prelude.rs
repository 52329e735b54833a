#![no_implicit_prelude]

/// A table whose generated code must not rely on the prelude.
#[::kalamdb_model::system_table(name = "things")]
#[derive(::serde::Serialize, ::serde::Deserialize, ::std::clone::Clone)]
pub struct Thing {
    /// Key.
    #[column(key)]
    pub id: ::std::string::String,
    pub count: i64,
    pub note: ::std::option::Option<::std::string::String>,
    #[column(hidden)]
    pub secret: ::std::string::String,
}

fn main() {
    let schema = <Thing as ::kalamdb_model::SystemTable>::schema();
    ::std::assert_eq!(schema.fields().len(), 3);
}
