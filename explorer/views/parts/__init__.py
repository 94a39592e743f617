"""Sub-panels shared by the explorer's tabs (schema_form: form rows generated from a settings schema)."""
