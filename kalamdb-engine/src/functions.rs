//! KalamDB's SQL functions: `CURRENT_USER()`, `SNOWFLAKE_ID()`, and the
//! size-checked wrappers of DataFusion's functions whose output size an
//! argument sets (`bounded`).

mod bounded;

pub(crate) use bounded::bounded_functions;

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::registry::TableRegistry;

/// `CURRENT_USER()`: the id of the user the batch runs for. One instance is
/// registered per batch, bound to its caller.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct CurrentUserUdf {
    user_id: String,
    signature: Signature,
}

impl CurrentUserUdf {
    pub(crate) fn new(user_id: &str) -> Self {
        CurrentUserUdf {
            user_id: user_id.to_string(),
            signature: Signature::nullary(Volatility::Stable),
        }
    }
}

impl ScalarUDFImpl for CurrentUserUdf {
    fn name(&self) -> &str {
        "current_user"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        _args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
            self.user_id.clone(),
        ))))
    }
}

/// `SNOWFLAKE_ID()`: a new, unique, time-ordered BIGINT per row.
#[derive(Debug)]
pub(crate) struct SnowflakeIdUdf {
    tables: Arc<TableRegistry>,
    signature: Signature,
}

impl SnowflakeIdUdf {
    pub(crate) fn new(tables: Arc<TableRegistry>) -> Self {
        SnowflakeIdUdf {
            tables,
            signature: Signature::nullary(Volatility::Volatile),
        }
    }
}

impl PartialEq for SnowflakeIdUdf {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for SnowflakeIdUdf {}

impl Hash for SnowflakeIdUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        "snowflake_id".hash(state);
    }
}

impl ScalarUDFImpl for SnowflakeIdUdf {
    fn name(&self) -> &str {
        "snowflake_id"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let ids: Int64Array = (0..args.number_rows)
            .map(|_| Some(self.tables.hot().snowflake_id()))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(ids)))
    }
}
