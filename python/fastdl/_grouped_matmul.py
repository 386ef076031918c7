"""The matmul of a grouped convolution: G independent matmuls, one batched matmul call.

A convolution with `groups` = G splits the C input channels and the F filters into G groups of
Cg = C / G and Fg = F / G: filter f, of group g = f // Fg, sees input channels
[g Cg, (g + 1) Cg) only. Keras stores the kernel as (kh, kw, Cg, F): the matrix W (K, F),
K = T Cg with T = kh kw taps, rows ordered (tap, channel) as im2col's, and group g's columns
the block [g Fg, (g + 1) Fg).

im2col's rows (M, T C), ordered (tap, channel), hold group g's inputs at channels
[g Cg, (g + 1) Cg) of each tap. Gathered per group they are R (G, M, K):
R[g, m, t Cg + c] = rows[m, t C + g Cg + c]. With Wg = W[:, g Fg : (g + 1) Fg] and
dzg = dz[:, g Fg : (g + 1) Fg]:

    z[:, g Fg : (g + 1) Fg] = R[g] @ Wg           (forward)
    dW[:, g Fg : (g + 1) Fg] = R[g]^T @ dzg       (the kernel's gradient)
    dR[g] = dzg @ Wg^T                            (the rows' gradient, scattered back to (M, T C))

each one batched matmul over the G groups (np.matmul, or cupy.matmul on a GPU). A depthwise
convolution is the case Cg = 1, G = C.
"""


def _by_group(kernel, groups):
    """W (K, F) as (G, K, Fg): Wg for each group (a view)."""
    k, f = kernel.shape
    return kernel.reshape(k, groups, f // groups).transpose(1, 0, 2)


def forward(rows, kernel, z, taps, buffer, xp):
    """Writes z (M, F), the grouped product of rows (M, T C) and the kernel matrix (K, F); the
    number of groups is T C / K. Returns R (G, M, K), which the backward needs.
    buffer(key, shape, xp): the layer's reused arrays."""
    m, k = len(rows), kernel.shape[0]
    groups = rows.shape[1] // k
    cg, fg = k // taps, z.shape[1] // groups
    r = buffer("group_rows", (groups, m, k), xp)
    xp.copyto(r.reshape(groups, m, taps, cg), rows.reshape(m, taps, groups, cg).transpose(2, 0, 1, 3))
    zg = buffer("group_z", (groups, m, fg), xp)
    xp.matmul(r, _by_group(kernel, groups), out=zg)
    xp.copyto(z.reshape(m, groups, fg), zg.transpose(1, 0, 2))
    return r


def backward(r, dz, kernel, dkernel, d_rows, taps, buffer, xp):
    """From R (G, M, K) and dz (M, F): writes the kernel matrix's gradient into dkernel (K, F) and
    the rows' gradient into d_rows (M, T C); either may be None (not computed)."""
    groups, m, k = r.shape
    fg = dz.shape[1] // groups
    dzg = buffer("group_dz", (groups, m, fg), xp)
    xp.copyto(dzg, dz.reshape(m, groups, fg).transpose(1, 0, 2))
    if dkernel is not None:
        dw = buffer("group_dkernel", (groups, k, fg), xp)
        xp.matmul(r.transpose(0, 2, 1), dzg, out=dw)
        xp.copyto(dkernel.reshape(k, groups, fg), dw.transpose(1, 0, 2))
    if d_rows is not None:
        dr = buffer("group_drows", (groups, m, k), xp)
        xp.matmul(dzg, _by_group(kernel, groups).transpose(0, 2, 1), out=dr)
        cg = k // taps
        xp.copyto(d_rows.reshape(m, taps, groups, cg), dr.reshape(groups, m, taps, cg).transpose(1, 2, 0, 3))
