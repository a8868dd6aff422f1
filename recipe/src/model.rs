//! A small modern GPT: pre-norm residual blocks with RMSNorm, rotary position
//! embeddings, causal scaled-dot-product attention and a GELU MLP.

use crate::optim::AdamW;
use crate::{HParams, ModelSpec, Recipe, RecipeError, StepCtx, StepStats};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

pub struct Gpt {
    hp: HParams,
    spec: ModelSpec,
    vs: nn::VarStore,
    wte: nn::Embedding,
    blocks: Vec<Block>,
    norm_f: RmsNorm,
    /// `None` when the head is tied to `wte`.
    head: Option<nn::Linear>,
    rope: Rope,
    opt: AdamW,
}

impl Gpt {
    pub fn new(hp: HParams, spec: ModelSpec) -> Self {
        let vs = nn::VarStore::new(spec.device);
        let root = vs.root();
        let std = hp.init_std;
        // Residual projections start smaller so the stream's variance does not grow with depth.
        let proj_std = std / (2.0 * hp.n_layer as f64).sqrt();
        let wte = nn::embedding(
            &root / "wte",
            spec.vocab_size,
            hp.d_model,
            nn::EmbeddingConfig { ws_init: normal(std), ..Default::default() },
        );
        let blocks = (0..hp.n_layer).map(|i| Block::new(&root / "blocks" / i, &hp, std, proj_std)).collect();
        let norm_f = RmsNorm::new(&root / "norm_f", hp.d_model);
        let head = (!hp.tie_embeddings).then(|| linear(&root / "head", hp.d_model, spec.vocab_size, std));
        let rope = Rope::new(hp.d_model / hp.n_head, spec.seq_len, spec.device);
        let opt = AdamW::new(&vs, &hp, (hp.batch_rows * spec.seq_len) as u64);
        Gpt { hp, spec, vs, wte, blocks, norm_f, head, rope, opt }
    }

    fn forward(&self, idx: &Tensor) -> Tensor {
        let mut x = self.wte.forward(idx);
        for block in &self.blocks {
            x = block.forward(&x, &self.rope);
        }
        let x = self.norm_f.forward(&x);
        match &self.head {
            Some(head) => head.forward(&x),
            None => x.matmul(&self.wte.ws.tr()),
        }
    }

    fn on_cuda(&self) -> bool {
        self.spec.device.is_cuda()
    }
}

impl Recipe for Gpt {
    fn batch_rows(&self) -> i64 {
        self.hp.batch_rows
    }

    fn train_step(&mut self, inputs: &Tensor, targets: &Tensor, ctx: &StepCtx) -> StepStats {
        let logits = tch::autocast(self.on_cuda(), || self.forward(inputs));
        let loss =
            logits.to_kind(Kind::Float).view([-1, self.spec.vocab_size]).cross_entropy_for_logits(&targets.view([-1]));
        self.opt.zero_grad();
        loss.backward();
        let (lr, grad_norm) = self.opt.step(ctx);
        StepStats { loss: loss.double_value(&[]), lr, grad_norm }
    }

    fn logits(&self, inputs: &Tensor) -> Tensor {
        tch::no_grad(|| tch::autocast(self.on_cuda(), || self.forward(inputs)).to_kind(Kind::Float))
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> =
            sorted_vars(&self.vs).into_iter().map(|(n, t)| (format!("model.{n}"), t)).collect();
        out.extend(self.opt.state());
        out
    }

    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<(), RecipeError> {
        let given: std::collections::HashMap<&str, &Tensor> = state.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut ours = self.state();
        if let Some((name, _)) = state.iter().find(|(n, _)| !ours.iter().any(|(o, _)| o == n)) {
            return Err(RecipeError::UnexpectedState(name.clone()));
        }
        tch::no_grad(|| {
            for (name, dst) in ours.iter_mut() {
                let src = given.get(name.as_str()).ok_or_else(|| RecipeError::MissingState(name.clone()))?;
                if src.size() != dst.size() {
                    return Err(RecipeError::StateShape {
                        name: name.clone(),
                        found: src.size(),
                        expected: dst.size(),
                    });
                }
                dst.copy_(src);
            }
            Ok(())
        })
    }

    fn num_params(&self) -> i64 {
        self.vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }
}

/// Variables of a store by name, sorted so every traversal has one fixed order.
pub(crate) fn sorted_vars(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<_> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

fn normal(stdev: f64) -> nn::Init {
    nn::Init::Randn { mean: 0.0, stdev }
}

fn linear(path: nn::Path, d_in: i64, d_out: i64, std: f64) -> nn::Linear {
    nn::linear(path, d_in, d_out, nn::LinearConfig { ws_init: normal(std), bs_init: None, bias: false })
}

struct Block {
    norm1: RmsNorm,
    attn: Attention,
    norm2: RmsNorm,
    fc: nn::Linear,
    proj: nn::Linear,
}

impl Block {
    fn new(p: nn::Path, hp: &HParams, std: f64, proj_std: f64) -> Self {
        let hidden = hp.mlp_ratio * hp.d_model;
        Block {
            norm1: RmsNorm::new(&p / "norm1", hp.d_model),
            attn: Attention::new(&p / "attn", hp, std, proj_std),
            norm2: RmsNorm::new(&p / "norm2", hp.d_model),
            fc: linear(&p / "fc", hp.d_model, hidden, std),
            proj: linear(&p / "proj", hidden, hp.d_model, proj_std),
        }
    }

    fn forward(&self, x: &Tensor, rope: &Rope) -> Tensor {
        let x = x + self.attn.forward(&self.norm1.forward(x), rope);
        let h = self.fc.forward(&self.norm2.forward(&x)).gelu("tanh");
        &x + self.proj.forward(&h)
    }
}

struct Attention {
    qkv: nn::Linear,
    out: nn::Linear,
    n_head: i64,
}

impl Attention {
    fn new(p: nn::Path, hp: &HParams, std: f64, proj_std: f64) -> Self {
        Attention {
            qkv: linear(&p / "qkv", hp.d_model, 3 * hp.d_model, std),
            out: linear(&p / "out", hp.d_model, hp.d_model, proj_std),
            n_head: hp.n_head,
        }
    }

    fn forward(&self, x: &Tensor, rope: &Rope) -> Tensor {
        let (b, t, d) = x.size3().expect("attention input is [batch, time, dim]");
        let heads = |z: &Tensor| z.view([b, t, self.n_head, d / self.n_head]).transpose(1, 2);
        let qkv = self.qkv.forward(x).chunk(3, 2);
        let q = rope.apply(&heads(&qkv[0]));
        let k = rope.apply(&heads(&qkv[1]));
        let v = heads(&qkv[2]);
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, true, None, false);
        self.out.forward(&y.transpose(1, 2).contiguous().view([b, t, d]))
    }
}

struct RmsNorm {
    weight: Tensor,
}

impl RmsNorm {
    fn new(p: nn::Path, d: i64) -> Self {
        RmsNorm { weight: p.ones("weight", &[d]) }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let d = self.weight.size()[0];
        x.rms_norm([d], Some(&self.weight), 1e-6)
    }
}

/// Rotary position embedding (half-split form), tables precomputed for `seq_len`.
struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    fn new(head_dim: i64, seq_len: i64, device: Device) -> Self {
        let half = head_dim / 2;
        let inv_freq = (Tensor::arange(half, (Kind::Float, device)) * (-2.0 * 10000f64.ln() / head_dim as f64)).exp();
        let pos = Tensor::arange(seq_len, (Kind::Float, device));
        let angles = pos.outer(&inv_freq); // [T, half]
        Rope { cos: angles.cos().view([1, 1, seq_len, half]), sin: angles.sin().view([1, 1, seq_len, half]) }
    }

    /// `x` is `[batch, heads, time, head_dim]`.
    fn apply(&self, x: &Tensor) -> Tensor {
        let t = x.size()[2];
        let half = x.size()[3] / 2;
        let (cos, sin) = (self.cos.narrow(2, 0, t), self.sin.narrow(2, 0, t));
        let (x1, x2) = (x.narrow(3, 0, half), x.narrow(3, half, half));
        let cos = cos.to_kind(x.kind());
        let sin = sin.to_kind(x.kind());
        Tensor::cat(&[&x1 * &cos - &x2 * &sin, &x1 * &sin + &x2 * &cos], 3)
    }
}
