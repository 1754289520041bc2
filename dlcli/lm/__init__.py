"""Language models: configs, data, training on the shared loop, opening runs, generation, evaluation."""
