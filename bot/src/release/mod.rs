//! What those who clone a release get: its number re-made from the tag
//! (`karpa reproduce`), the release as a model folder with weights and a card
//! (`karpa model export`, `karpa model verify`), and a reference model re-trained
//! from the tag (`karpa reference`).

pub mod card;
pub mod model;
pub mod reference;
pub mod reproduce;
pub mod weights;
