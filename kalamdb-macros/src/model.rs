//! Parse step: the struct and its attributes, validated into a small model.

use proc_macro2::TokenStream;
use syn::{Attribute, Expr, ExprLit, Fields, Ident, ItemStruct, Lit, LitStr, Meta, Type};

/// A validated `#[system_table]` struct.
pub struct TableDef {
    pub ident: Ident,
    /// Table name inside the `system` schema, e.g. `users`.
    pub name: String,
    pub doc: String,
    pub columns: Vec<ColumnDef>,
    /// Index into `columns` of the key field.
    pub key: usize,
}

/// One field of the struct.
pub struct ColumnDef {
    pub ident: Ident,
    pub ty: Type,
    pub doc: String,
    /// Stored but never part of the Arrow schema (e.g. password hashes).
    pub hidden: bool,
}

impl TableDef {
    /// Parses the attribute arguments and the struct. Returns the model and
    /// the struct with the `#[column(...)]` helper attributes removed.
    pub fn parse(args: TokenStream, mut item: ItemStruct) -> syn::Result<(Self, ItemStruct)> {
        let name = parse_table_name(args, &item)?;
        if !item.generics.params.is_empty() {
            return Err(syn::Error::new_spanned(
                &item.generics,
                "#[system_table] does not support generic structs",
            ));
        }
        let Fields::Named(fields) = &mut item.fields else {
            return Err(syn::Error::new_spanned(
                &item.ident,
                "#[system_table] needs a struct with named fields",
            ));
        };

        let mut columns = Vec::new();
        let mut key = None;
        for field in fields.named.iter_mut() {
            let ident = field.ident.clone().expect("named field");
            let flags = take_column_flags(&mut field.attrs)?;
            if flags.key {
                if key.is_some() {
                    return Err(syn::Error::new_spanned(
                        &ident,
                        "#[system_table] allows only one #[column(key)] field",
                    ));
                }
                if flags.hidden {
                    return Err(syn::Error::new_spanned(
                        &ident,
                        "the key column cannot be #[column(hidden)]",
                    ));
                }
                key = Some(columns.len());
            }
            columns.push(ColumnDef {
                ident,
                ty: field.ty.clone(),
                doc: doc_text(&field.attrs),
                hidden: flags.hidden,
            });
        }
        let Some(key) = key else {
            return Err(syn::Error::new_spanned(
                &item.ident,
                "#[system_table] needs one field marked #[column(key)]",
            ));
        };
        let def = TableDef {
            ident: item.ident.clone(),
            name,
            doc: doc_text(&item.attrs),
            columns,
            key,
        };
        Ok((def, item))
    }
}

fn parse_table_name(args: TokenStream, item: &ItemStruct) -> syn::Result<String> {
    let mut name: Option<LitStr> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            name = Some(meta.value()?.parse()?);
            Ok(())
        } else {
            Err(meta.error("unknown #[system_table] argument; expected `name = \"...\"`"))
        }
    });
    syn::parse::Parser::parse2(parser, args)?;
    let Some(name) = name else {
        return Err(syn::Error::new_spanned(
            &item.ident,
            "#[system_table] needs a table name: #[system_table(name = \"...\")]",
        ));
    };
    let value = name.value();
    let valid = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(syn::Error::new_spanned(
            name,
            "system table names use lowercase letters, digits and `_`",
        ));
    }
    Ok(value)
}

#[derive(Default)]
struct ColumnFlags {
    key: bool,
    hidden: bool,
}

/// Removes `#[column(...)]` from a field's attributes and reads its flags.
fn take_column_flags(attrs: &mut Vec<Attribute>) -> syn::Result<ColumnFlags> {
    let mut flags = ColumnFlags::default();
    let mut error = None;
    attrs.retain(|attr| {
        if !attr.path().is_ident("column") {
            return true;
        }
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("key") {
                flags.key = true;
                Ok(())
            } else if meta.path.is_ident("hidden") {
                flags.hidden = true;
                Ok(())
            } else {
                Err(meta.error("unknown column flag; expected `key` or `hidden`"))
            }
        });
        if let Err(err) = result {
            error.get_or_insert(err);
        }
        false
    });
    match error {
        Some(err) => Err(err),
        None => Ok(flags),
    }
}

/// Joins the `///` lines of an item, trimmed, with single spaces.
pub fn doc_text(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) => Some(s.value().trim().to_string()),
                _ => None,
            },
            _ => None,
        })
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn parse(args: TokenStream, item: TokenStream) -> syn::Result<TableDef> {
        TableDef::parse(args, syn::parse2(item).unwrap()).map(|(d, _)| d)
    }

    #[test]
    fn reads_key_hidden_and_docs() {
        let def = parse(
            quote!(name = "users"),
            quote! {
                /// People.
                struct User {
                    /// The id.
                    #[column(key)]
                    id: String,
                    #[column(hidden)]
                    secret: String,
                }
            },
        )
        .unwrap();
        assert_eq!(def.name, "users");
        assert_eq!(def.doc, "People.");
        assert_eq!(def.key, 0);
        assert_eq!(def.columns[0].doc, "The id.");
        assert!(def.columns[1].hidden);
    }

    #[test]
    fn rejects_missing_key_and_bad_name() {
        let err = parse(
            quote!(name = "t"),
            quote!(
                struct T {
                    a: String,
                }
            ),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("#[column(key)]"));
        let err = parse(
            quote!(name = "Bad-Name"),
            quote!(
                struct T {
                    #[column(key)]
                    a: String,
                }
            ),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("lowercase"));
        let err = parse(
            quote!(),
            quote!(
                struct T {
                    #[column(key)]
                    a: String,
                }
            ),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("needs a table name"));
    }

    #[test]
    fn rejects_two_keys() {
        let err = parse(
            quote!(name = "t"),
            quote!(
                struct T {
                    #[column(key)]
                    a: String,
                    #[column(key)]
                    b: String,
                }
            ),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("only one"));
    }
}
