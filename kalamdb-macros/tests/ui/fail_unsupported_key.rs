use kalamdb_model::system_table;

#[system_table(name = "things")]
#[derive(serde::Serialize, serde::Deserialize, Clone)]
pub struct Thing {
    #[column(key)]
    pub id: f64,
}

fn main() {}
