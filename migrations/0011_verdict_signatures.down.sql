ALTER TABLE verdicts DROP CONSTRAINT verdicts_signed_whole, DROP COLUMN signature, DROP COLUMN validator;
