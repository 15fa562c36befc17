"""Power forecast: features, model, training, walk-forward backtest, load state."""
