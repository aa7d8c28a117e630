"""Exact-likelihood Markov-chain source/target pairs, forward-backward oracles and the synthetic benchmark."""
