// The help texts of `denoise` and its subcommands (kept apart so main.swift reads as the program).

enum Help {
    static let root = """
        Reads: nothing (sampling from noise), or frames with 'x' (and 't', 'y') for SDEdit (--from), the bound \
        (nll) and the score. Writes: frames of kind 'batch' (and 'trajectory'), 'score' frames, or the bound as text. \
        `denoise [sample] OPTIONS` is the default command; see `denoise sample --help` for its options.

        Examples:
          denoise --model roll.safetensors -n 10000 --sampler ddim --steps 50 > samples.st
          denoise --model mnist.safetensors --label 3 --guidance 3 -n 64 > threes.st
          denoise nll --model mnist.safetensors --nll-steps 100 < test.st
        """

    static let sample = """
        Reads: nothing, or with --from frames with 'x' (F32 [N,D] or [N,C,H,W]) and optionally 't', 'y' \
        (a leading schedule frame is used as the schedule). Writes: frames of kind 'batch' with 'x' (and 'y' when \
        conditional); with --every K also frames of kind 'trajectory' (metadata t, step; tensors x = x_t, x0_pred).

        The noise predictor is a trained model file (--model M.safetensors, from train: its schedule and data shape \
        are used; EMA weights unless --weights raw), a process speaking the stream protocol (--predictor 'CMD ARGS', \
        docs/FORMAT.md) or an exact analytic one (--analytic 'gaussian mu=0.5 sigma=0.3'). Sample j uses the \
        random stream (seed, sampler, j): results do not depend on --batch (with a model up to float rounding of its \
        batched GEMMs); --offset K starts at sample K.

        Class-conditional models: --label Y (or 'y' in the --from input) samples class Y; with no label the model is \
        asked for its null class, i.e. samples are drawn UNCONDITIONALLY. --guidance W --label Y: classifier-free \
        guidance (one batched forward per step over the label and the null class). --classifier C --classifier-scale S \
        --label Y: classifier guidance with a noise-aware classifier (train --classifier). A model with a learned \
        variance (train --loss hybrid) samples with it by default (--variance learned).

        Few-step samplers: --sampler euler, euler-ancestral, heun (2 predictions per step), dpmpp-2m (DPM-Solver++ \
        2M), dpmpp-2m-sde or unipc, usually with --steps 10 ... 50 and --spacing trailing or karras; --clip or \
        --dynamic-threshold bound the predicted x_0 for every sampler (docs/METHODS.md, section 6).

        The variational bound and the score have their own subcommands, `denoise nll` and `denoise score`; \
        the flags --nll and --score of this command run them too.

        Examples:
          denoise --analytic 'gaussian mu=0.5 sigma=0.3' --shape 2 -n 1000 > samples.st
          denoise --predictor 'guide --analytic "mixture mu=-1,1 sigma=0.2"' --shape 2 --sampler ddim --steps 50 -n 64 > s.st
          denoise --analytic 'mixture mu=-1,1 sigma=0.2' --shape 2 --sampler dpmpp-2m --steps 15 --spacing karras -n 64 > s.st
          noise -t 500 < x0.st | denoise --from 500 --analytic 'gaussian mu=0 sigma=0.5' > edited.st
          denoise --model roll.safetensors -n 10000 --sampler ddim --steps 50 > samples.st
          denoise --model mnist.safetensors --label 3 --guidance 3 -n 64 > threes.st
        """

    static let nll = """
        Reads data frames ('x' in [-1, 1], e.g. images scaled from 8-bit pixels, optional 'y') and prints the \
        variational bound L_vlb = L_T + sum_t L_{t-1} + L_0 in bits/dim (mean over the examples) on stdout; \
        --terms prints TSV lines 't<TAB>mean term' (t = T: the prior term L_T) and a final 'total' line. \
        --nll-steps K: unbiased stratified estimate of the sum over t = 1..T-1 from one random t in each of K strata \
        (docs/METHODS.md).

        Example:
          denoise nll --model mnist.safetensors --nll-steps 100 < test.st
        """

    static let score = """
        Reads frames with 'x' and 't' (or gives every sample the timestep --from T) and writes frames of kind \
        'score' with 'x', 't', 'score' = -eps/sqrt(1 - abar_t) (and 'y').

        Example:
          noise -t 300 < x0.st | denoise score --model roll.safetensors > scores.st
        """

    static let invert = """
        Reads x_0 frames ('x', optional 'y') and writes frames of kind 'batch' with 'x' = the DDIM \
        inversion of each sample at timestep --to (default T - 1), 't' and 'y': x_i = sqrt(abar_i) x0^ + \
        sqrt(1 - abar_i) eps, with eps predicted at the level below (docs/METHODS.md). Decoding them \
        with `denoise --from T --sampler ddim` and the same --steps and --spacing gives x_0 back, up to \
        an error that falls as 1/K. Deterministic.

        Example:
          denoise invert --model M --steps 50 --spacing trailing < x0.st > xT.st
          denoise --model M --sampler ddim --steps 50 --spacing trailing --from 999 < xT.st > x0-again.st
        """

    static let inpaint = """
        Reads x_0 frames ('x', optional 'y') and a --mask of known pixels, and writes frames of kind \
        'batch' whose unknown pixels are generated by RePaint (Lugmayr et al. 2022): at every reverse \
        step the known pixels are re-noised from q(x_t | x_0) and merged with the sampler's x_t, and \
        every --jump levels the chain goes back up by the forward process and down again, --resample \
        times, so that the completion agrees with the known part. Any --sampler, any predictor, \
        guidance included (a label or the frames' 'y').

        Example:
          denoise inpaint --model M --mask left-half.png --label 3 --guidance 2 --sampler ddim --steps 50 < digits.st > done.st
        """
}
