/* Trilinear interpolation of a dense [R, R, R] float32 grid with its closed-form spatial
 * gradient, and the backward pass onto the grid: the inner loop of privhead's SDF, fused.
 *
 * Same conventions as privhead.field.grid.trilinear_with_gradient (the reference the tests
 * compare with): vertex-centred grid over [-bound, bound]^3, x-major layout, points outside
 * the cube use the boundary cell (linear extrapolation). Plain C, no dependencies: compiled on
 * first use by privhead.field.native (gcc/cc) and called through ctypes, which releases the
 * GIL. Every loop is serial, so results do not depend on the thread count.
 */
#include <math.h>
#include <stdint.h>

static inline void locate(const float *p, int64_t res, float scale, float bound,
                          int64_t *origin, float *f) {
    int64_t b[3];
    for (int a = 0; a < 3; ++a) {
        float c = (p[a] + bound) * scale;
        float fl = floorf(c);
        if (fl < 0.0f) fl = 0.0f;
        if (fl > (float)(res - 2)) fl = (float)(res - 2);
        b[a] = (int64_t)fl;
        f[a] = c - fl;
    }
    *origin = b[0] * res * res + b[1] * res + b[2];
}

/* values[n]; gradient[n * 3] or NULL. */
void privhead_trilinear_forward(const float *grid, int64_t res, float bound, const float *points,
                                int64_t n, float *values, float *gradient) {
    const float scale = (float)(res - 1) / (2.0f * bound);
    const int64_t sx = res * res, sy = res;
    for (int64_t i = 0; i < n; ++i) {
        int64_t o;
        float f[3];
        locate(points + 3 * i, res, scale, bound, &o, f);
        const float *g = grid + o;
        /* corners c[x][y][z] */
        float c000 = g[0], c001 = g[1], c010 = g[sy], c011 = g[sy + 1];
        float c100 = g[sx], c101 = g[sx + 1], c110 = g[sx + sy], c111 = g[sx + sy + 1];
        /* along x (as the reference: v0 + fx * (v1 - v0)) */
        float d00 = c100 - c000, d01 = c101 - c001, d10 = c110 - c010, d11 = c111 - c011;
        float x00 = c000 + f[0] * d00, x01 = c001 + f[0] * d01;
        float x10 = c010 + f[0] * d10, x11 = c011 + f[0] * d11;
        /* along y */
        float xy0 = x00 + f[1] * (x10 - x00), xy1 = x01 + f[1] * (x11 - x01);
        values[i] = xy0 + f[2] * (xy1 - xy0);
        if (gradient) {
            float dx0 = d00 + f[1] * (d10 - d00), dx1 = d01 + f[1] * (d11 - d01);
            float gx = dx0 + f[2] * (dx1 - dx0);
            float dy0 = x10 - x00, dy1 = x11 - x01;
            float gy = dy0 + f[2] * (dy1 - dy0);
            float gz = xy1 - xy0;
            gradient[3 * i] = gx * scale;
            gradient[3 * i + 1] = gy * scale;
            gradient[3 * i + 2] = gz * scale;
        }
    }
}

/* grid_grad[res^3] += d loss / d grid, from d loss / d values (grad_values[n] or NULL) and
 * d loss / d gradient (grad_gradient[n * 3] or NULL). */
void privhead_trilinear_backward(int64_t res, float bound, const float *points, int64_t n,
                                 const float *grad_values, const float *grad_gradient,
                                 float *grid_grad) {
    const float scale = (float)(res - 1) / (2.0f * bound);
    const int64_t sx = res * res, sy = res;
    for (int64_t i = 0; i < n; ++i) {
        int64_t o;
        float f[3];
        locate(points + 3 * i, res, scale, bound, &o, f);
        const float x1 = f[0], y1 = f[1], z1 = f[2];
        const float x0 = 1.0f - x1, y0 = 1.0f - y1, z0 = 1.0f - z1;
        float w[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        if (grad_values) {
            const float v = grad_values[i];
            w[0] = v * x0 * y0 * z0; w[1] = v * x0 * y0 * z1;
            w[2] = v * x0 * y1 * z0; w[3] = v * x0 * y1 * z1;
            w[4] = v * x1 * y0 * z0; w[5] = v * x1 * y0 * z1;
            w[6] = v * x1 * y1 * z0; w[7] = v * x1 * y1 * z1;
        }
        if (grad_gradient) {
            const float gx = grad_gradient[3 * i] * scale;
            const float gy = grad_gradient[3 * i + 1] * scale;
            const float gz = grad_gradient[3 * i + 2] * scale;
            /* d value / d x at corner (i, j, k) = (2i - 1) * wy_j * wz_k, etc. */
            w[0] += -gx * y0 * z0 - gy * x0 * z0 - gz * x0 * y0;
            w[1] += -gx * y0 * z1 - gy * x0 * z1 + gz * x0 * y0;
            w[2] += -gx * y1 * z0 + gy * x0 * z0 - gz * x0 * y1;
            w[3] += -gx * y1 * z1 + gy * x0 * z1 + gz * x0 * y1;
            w[4] += gx * y0 * z0 - gy * x1 * z0 - gz * x1 * y0;
            w[5] += gx * y0 * z1 - gy * x1 * z1 + gz * x1 * y0;
            w[6] += gx * y1 * z0 + gy * x1 * z0 - gz * x1 * y1;
            w[7] += gx * y1 * z1 + gy * x1 * z1 + gz * x1 * y1;
        }
        float *g = grid_grad + o;
        g[0] += w[0]; g[1] += w[1]; g[sy] += w[2]; g[sy + 1] += w[3];
        g[sx] += w[4]; g[sx + 1] += w[5]; g[sx + sy] += w[6]; g[sx + sy + 1] += w[7];
    }
}
