//! AdamW with linear warmup and cosine decay, global-norm gradient clipping.
//! Matrices and embeddings are decayed; norm gains are not.

use crate::model::sorted_vars;
use crate::{HParams, StepCtx};
use tch::{nn, Kind, Tensor};

pub struct AdamW {
    hp: HParams,
    params: Vec<Param>,
    tokens_per_step: u64,
    /// Optimizer steps taken so far (kept as a tensor so checkpoints carry it).
    steps: Tensor,
}

struct Param {
    name: String,
    value: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    decay: bool,
}

impl AdamW {
    pub fn new(vs: &nn::VarStore, hp: &HParams, tokens_per_step: u64) -> Self {
        let params = sorted_vars(vs)
            .into_iter()
            .map(|(name, value)| Param {
                exp_avg: value.zeros_like(),
                exp_avg_sq: value.zeros_like(),
                decay: value.dim() >= 2,
                name,
                value,
            })
            .collect();
        AdamW { hp: hp.clone(), params, tokens_per_step, steps: Tensor::zeros([], (Kind::Int64, vs.device())) }
    }

    /// Learning rate for the step described by `ctx`: linear warmup that reaches the
    /// peak once `warmup_frac` of the budget has been consumed, then cosine decay.
    pub fn lr_at(&self, ctx: &StepCtx) -> f64 {
        let hp = &self.hp;
        let progress = ctx.progress();
        let after_step = (ctx.tokens_seen + self.tokens_per_step) as f64 / ctx.token_budget as f64;
        if hp.warmup_frac > 0.0 && progress < hp.warmup_frac {
            return hp.lr * (after_step / hp.warmup_frac).min(1.0);
        }
        let decay = (progress - hp.warmup_frac) / (1.0 - hp.warmup_frac).max(1e-9);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * decay.min(1.0)).cos());
        hp.lr * (hp.min_lr_frac + (1.0 - hp.min_lr_frac) * cosine)
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.value.zero_grad();
        }
    }

    /// Applies one update from the current gradients; returns (lr, grad norm before clipping).
    pub fn step(&mut self, ctx: &StepCtx) -> (f64, f64) {
        let hp = &self.hp;
        let lr = self.lr_at(ctx);
        tch::no_grad(|| {
            let grads: Vec<Tensor> = self.params.iter().map(|p| p.value.grad()).collect();
            let sq: Vec<Tensor> = grads.iter().map(|g| g.square().sum(Kind::Float)).collect();
            let grad_norm = Tensor::stack(&sq, 0).sum(Kind::Float).sqrt().double_value(&[]);
            let clip =
                if hp.grad_clip > 0.0 && grad_norm > hp.grad_clip { hp.grad_clip / (grad_norm + 1e-6) } else { 1.0 };
            let _ = self.steps.g_add_scalar_(1);
            let t = self.steps.int64_value(&[]) as i32;
            let bias1 = 1.0 - hp.beta1.powi(t);
            let bias2 = 1.0 - hp.beta2.powi(t);
            for (p, g) in self.params.iter_mut().zip(grads) {
                let g = if clip < 1.0 { g * clip } else { g };
                if p.decay && hp.weight_decay > 0.0 {
                    let _ = p.value.g_mul_scalar_(1.0 - lr * hp.weight_decay);
                }
                let _ = p.exp_avg.lerp_(&g, 1.0 - hp.beta1);
                let _ = p.exp_avg_sq.g_mul_scalar_(hp.beta2);
                let _ = p.exp_avg_sq.g_add_(&(g.square() * (1.0 - hp.beta2)));
                let denom = (&p.exp_avg_sq / bias2).sqrt() + hp.eps;
                let _ = p.value.addcdiv_(&(&p.exp_avg * (-lr / bias1)), &denom);
            }
            (lr, grad_norm)
        })
    }

    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("optim.steps".to_string(), self.steps.shallow_clone())];
        for p in &self.params {
            out.push((format!("optim.exp_avg.{}", p.name), p.exp_avg.shallow_clone()));
            out.push((format!("optim.exp_avg_sq.{}", p.name), p.exp_avg_sq.shallow_clone()));
        }
        out
    }
}
