//! Codegen step: one `SystemTable` implementation per struct.
//!
//! Column types map to Arrow through `<T as ::kalamdb_model::ArrowColumn>`,
//! never by matching type names, so an unsupported type is a trait error
//! spanned at the field's type. Every path is fully qualified.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::model::TableDef;

pub fn expand(def: &TableDef) -> TokenStream {
    let ident = &def.ident;
    let table_name = &def.name;
    let column_family = format!("system_{}", def.name);
    let table_doc = &def.doc;
    let key = &def.columns[def.key];
    let key_ident = &key.ident;
    let key_ty = &key.ty;
    let key_assert = quote_spanned! {key_ty.span()=>
        const _: fn() = || {
            fn key_must_be_storage_key<K: ::kalamdb_model::StorageKey + ?::core::marker::Sized>() {}
            key_must_be_storage_key::<#key_ty>();
        };
    };

    let visible: Vec<_> = def.columns.iter().filter(|c| !c.hidden).collect();
    let fields = visible.iter().map(|c| {
        let name = c.ident.to_string();
        let ty = &c.ty;
        let doc = &c.doc;
        quote_spanned! {ty.span()=>
            ::kalamdb_model::column_field::<#ty>(#name, #doc)
        }
    });
    let builders = visible.iter().enumerate().map(|(i, c)| {
        let ty = &c.ty;
        let field = &c.ident;
        let b = quote::format_ident!("column_{}", i);
        quote_spanned! {ty.span()=>
            let mut #b = <#ty as ::kalamdb_model::ArrowColumn>::builder(rows.len());
            for row in rows {
                <#ty as ::kalamdb_model::ArrowColumn>::append(&row.#field, &mut #b);
            }
        }
    });
    let arrays = (0..visible.len()).map(|i| {
        let b = quote::format_ident!("column_{}", i);
        quote! { ::kalamdb_model::__private::finish(&mut #b) }
    });

    quote! {
        #key_assert

        impl ::kalamdb_model::SystemTable for #ident {
            const TABLE_NAME: &'static str = #table_name;
            const COLUMN_FAMILY: &'static str = #column_family;
            type Key = #key_ty;

            fn key(&self) -> &Self::Key {
                &self.#key_ident
            }

            fn schema() -> ::kalamdb_model::__private::SchemaRef {
                static SCHEMA: ::std::sync::OnceLock<::kalamdb_model::__private::SchemaRef> =
                    ::std::sync::OnceLock::new();
                ::std::clone::Clone::clone(SCHEMA.get_or_init(|| {
                    ::kalamdb_model::table_schema(#table_doc, ::std::vec![#(#fields),*])
                }))
            }

            fn to_record_batch(
                rows: &[Self],
            ) -> ::std::result::Result<
                ::kalamdb_model::__private::RecordBatch,
                ::kalamdb_model::__private::ArrowError,
            > {
                #(#builders)*
                ::kalamdb_model::__private::RecordBatch::try_new(
                    <Self as ::kalamdb_model::SystemTable>::schema(),
                    ::std::vec![#(#arrays),*],
                )
            }
        }
    }
}
