//! JSON values that cross the API: `SqlRow`, one result row, a JSON object
//! keyed by column name in column order (documented as an object of any
//! values); `SqlParam`, one value for a `$n` placeholder (documented as a
//! string, number, boolean or null).

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SqlRow(pub Map<String, Value>);

impl Type for SqlRow {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "SqlRow".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(
                "A row keyed by column name. BIGINT values are strings, timestamps RFC 3339 UTC strings, NULL is null.",
            ),
            additional_properties: Some(Box::new(MetaSchemaRef::Inline(Box::new(MetaSchema::ANY)))),
            ..MetaSchema::new("object")
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl serde::Serialize for SqlRow {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl ToJSON for SqlRow {
    fn to_json(&self) -> Option<Value> {
        Some(Value::Object(self.0.clone()))
    }
}

impl ParseFromJSON for SqlRow {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::Object(map) => Ok(SqlRow(map)),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

/// One value for a `$n` placeholder. Any JSON value parses; the engine
/// refuses arrays and objects with a 400 that names the parameter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SqlParam(pub Value);

impl Type for SqlParam {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "SqlParam".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let scalar = |ty, nullable| {
            MetaSchemaRef::Inline(Box::new(MetaSchema {
                nullable,
                ..MetaSchema::new(ty)
            }))
        };
        // OpenAPI 3.0's `nullable` needs a `type` beside it, so null rides
        // on the string branch.
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(
                "A string, number, boolean or null, cast to the type the statement expects.",
            ),
            one_of: vec![
                scalar("string", true),
                scalar("number", false),
                scalar("boolean", false),
            ],
            ..MetaSchema::ANY
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl ToJSON for SqlParam {
    fn to_json(&self) -> Option<Value> {
        Some(self.0.clone())
    }
}

impl ParseFromJSON for SqlParam {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        Ok(SqlParam(value.unwrap_or_default()))
    }
}
