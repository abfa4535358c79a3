//! The towers' inputs gathered in candle ops, on any device (a GPU: `device = "cuda:N"`): the
//! counterpart of the fused CPU gather ([`Network::gather_items`], [`Network::gather_users`]).

use candle_core::{Tensor, Var};
use nn::bag::Bags;
use nn::layers::EmbeddingTable;
use nn::portable::{bag_sum, TouchedRows};

use super::network::{block, ItemBatch, Network, UserBatch};
use crate::error::{invalid, Result};

/// What [`Network::gather_leaves`] returns.
#[derive(Debug)]
pub struct Gathered {
    /// The item block, when an item batch was given.
    pub items: Option<Tensor>,
    /// The user block, when a user batch was given.
    pub users: Option<Tensor>,
    /// Each table's touched rows and their compact leaf, in the optimiser's order.
    pub leaves: Vec<(TouchedRows, Var)>,
}

impl Network {
    /// The gathered blocks of an item batch (`rows x item_embed`) and a user batch
    /// (`rows x user_sparse`), either may be absent, in candle ops on the tables' device: each
    /// table's rows that the batches read become a compact leaf (in the optimiser's
    /// sparse-table order: ids, tokens, user features), whose gradient after the backward
    /// pass is that table's row-sparse gradient. The id and token tables are shared by both
    /// towers, so one leaf per table collects both towers' gradients.
    pub fn gather_leaves(
        &self,
        items: Option<&ItemBatch>,
        users: Option<&UserBatch>,
    ) -> Result<Gathered> {
        let recent = self.layout.recent.is_some();
        // The bags each shared table reads: the items', then the histories', then the recent
        // windows'.
        let mut id_bags: Vec<&Bags> = Vec::new();
        let mut token_bags: Vec<&Bags> = Vec::new();
        if let Some(b) = items {
            id_bags.push(&b.ids);
            token_bags.push(&b.tokens);
        }
        if let Some(u) = users {
            id_bags.extend([&u.ids].into_iter().chain(recent.then_some(&u.recent_ids)));
            let tokens = [&u.tokens].into_iter();
            token_bags.extend(tokens.chain(recent.then_some(&u.recent_tokens)));
        }
        let mut leaves = Vec::new();
        let mut sums = |table: &EmbeddingTable, bags: &[&Bags]| -> Result<Vec<Tensor>> {
            let lists: Vec<&[u32]> = bags.iter().map(|b| b.ids.as_slice()).collect();
            let touched = TouchedRows::of(&lists);
            let leaf = touched.leaf(table.var().as_tensor())?;
            let out = bags
                .iter()
                .zip(&touched.local)
                .map(|(b, local)| Ok(bag_sum(leaf.as_tensor(), b, local)?))
                .collect::<Result<Vec<_>>>()?;
            leaves.push((touched, leaf));
            Ok(out)
        };
        let mut id_sums = sums(&self.ids, &id_bags)?.into_iter();
        let mut token_sums = match &self.tokens {
            Some(t) => sums(t, &token_bags)?,
            None => Vec::new(),
        }
        .into_iter();
        // Each block's embedded part: the id mean, then the token mean when there are tokens.
        let mut embed = |blocks: &mut Vec<Tensor>| {
            blocks.extend(id_sums.next());
            blocks.extend(token_sums.next());
        };
        let mut item_block = Vec::new();
        if items.is_some() {
            embed(&mut item_block);
        }
        let mut user_block = Vec::new();
        if let Some(u) = users {
            embed(&mut user_block);
            if recent {
                embed(&mut user_block);
            }
            for (table, bags) in self.user_categorical.iter().zip(&u.categorical) {
                user_block.extend(sums(table, &[bags])?);
            }
        }
        let cat = |blocks: Vec<Tensor>| -> Result<Option<Tensor>> {
            Ok(match blocks.is_empty() {
                true => None,
                false => Some(Tensor::cat(&blocks, 1)?),
            })
        };
        Ok(Gathered {
            items: cat(item_block)?,
            users: cat(user_block)?,
            leaves,
        })
    }

    /// The gathered block of an item batch as a tensor on the tables' device: the fused
    /// gather in host memory, [`Self::gather_leaves`] elsewhere.
    pub fn item_block(&self, b: &ItemBatch) -> Result<Tensor> {
        let device = self.ids.var().as_tensor().device();
        if device.is_cpu() {
            return block(
                self.gather_items(b)?,
                b.rows,
                self.layout.item_embed(),
                device,
            );
        }
        self.gather_leaves(Some(b), None)?
            .items
            .ok_or_else(|| invalid("an item batch gathered no block"))
    }

    /// The gathered block of a user batch as a tensor on the tables' device (see
    /// [`Self::item_block`]).
    pub fn user_block(&self, b: &UserBatch) -> Result<Tensor> {
        let device = self.ids.var().as_tensor().device();
        if device.is_cpu() {
            return block(
                self.gather_users(b)?,
                b.rows,
                self.layout.user_sparse,
                device,
            );
        }
        self.gather_leaves(None, Some(b))?
            .users
            .ok_or_else(|| invalid("a user batch gathered no block"))
    }
}
