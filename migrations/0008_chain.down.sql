DROP TABLE IF EXISTS chain_epochs;
