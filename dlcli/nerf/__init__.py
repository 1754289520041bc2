"""Neural radiance fields (Mildenhall et al., ECCV 2020) and a hash-grid fast model (Müller et al., 2022).

Split by role, as nerfstudio does:

    data.py         Blender (transforms_{train,val,test}.json) and Instant-NGP (transforms.json) data sets; a
                    config's split of one and its background
    synth.py        a procedural scene of coloured primitives, ray cast analytically into the Blender layout
    rays.py         rays from intrinsics and camera-to-world poses; ray / box intersection
    sampling.py     stratified and hierarchical (importance) sampling along rays
    encodings.py    positional encoding and the multiresolution hash encoding
    kernels.py      the hash encoding's forward and backward as compiled (numba) CPU kernels
    fields.py       the NeRF MLP and the small hash-grid MLP: position, direction -> density, colour
    render.py       volume rendering: sigma -> alpha -> transmittance -> weights -> colour, depth
    occupancy.py    an occupancy grid that lets the fast model skip empty space
    models.py       the two models end to end: rays -> colour, depth; a whole camera view
    config.py       NerfConfig (torch-free: `--help` reads it)
    train.py        train(): batches of rays, PSNR, validation renders, checkpoints (on the shared loop)
    camera_path.py  orbit and spiral camera paths
    renderer.py     render a run: camera paths or test views to GIF, MP4 or PNGs; eval (PSNR, SSIM)
    metrics.py      PSNR and SSIM
"""
