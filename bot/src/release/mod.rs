//! What those who clone a release get: its number re-made from the tag
//! (`karpa reproduce`), and the release as a model folder with weights and a
//! card (`karpa model export`, `karpa model verify`).

pub mod card;
pub mod model;
pub mod reproduce;
pub mod weights;
