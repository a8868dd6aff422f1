DROP TABLE IF EXISTS loss_curves;
