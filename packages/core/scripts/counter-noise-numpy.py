"""An independent float32 implementation (numpy) of the counter-noise algorithm of
packages/core/src/internal/counter-noise-ref.ts, written from its specification; it computed the
values that counter-rng.test.ts pins. Run: python3 packages/core/scripts/counter-noise-numpy.py"""
import numpy as np
u32=np.uint32; f32=np.float32
M=0xffffffff
def fmix(h):
    h&=M; h^=h>>16; h=(h*0x85ebca6b)&M; h^=h>>13; h=(h*0xc2b2ae35)&M; h^=h>>16; return h
def counter_key(seed,a,b):
    k0,k1=0x243f6a88,0x85a308d3
    for x in (seed,a,b):
        lo,hi=x&M,(x>>32)&M
        k0=fmix(((k0^lo)+0x9e3779b9)&M); k1=fmix(((k1^hi^k0)+0x7f4a7c15)&M)
    return k0,k1
Q=[f32(x) for x in ['-0.49999997','0.33333322','-0.25000775','0.20001902','-0.16627474','0.1419044','-0.1310436','0.12812869','-0.07848278']]
S=[f32(x) for x in ['1.5707964','-0.6459635','0.07968004','-0.0046016816']]
C=[f32(x) for x in ['-1.2337005','0.25366923','-0.020860165','0.0009037666']]
LN2HI=f32('0.6931381'); LN2LO=f32('9.0580015e-6')
def pair(k,j):
    k0,k1=k; k2=fmix(k0^0x6a09e667); k3=fmix(k1^0xbb67ae85)
    lo,hi=j&M,(j>>32)&M
    a=fmix(fmix(lo^k0)^hi^k1); b=fmix(fmix(lo^k2)^hi^k3)
    u=f32(f32(a>>1)*f32(2.0**-31))+f32(2.0**-32)
    bits=int(np.array([u],dtype=f32).view(np.int32)[0])
    e=(bits-0x3f3504f3)>>23
    m=np.array([bits-(e<<23)],dtype=np.int32).view(f32)[0]
    x=m-f32(1)
    p=Q[8]
    for c in reversed(Q[:8]): p=p*x+c
    ef=f32(e)
    lnu=((x*x)*p+ef*LN2LO+x)+ef*LN2HI
    r=np.sqrt(lnu*f32(-2))
    s=(b+0x20000000)&M; q=s>>30
    t=f32((s&0x3fffffff)-0x20000000)*f32(2.0**-30)
    t2=t*t
    sp=t*(((S[3]*t2+S[2])*t2+S[1])*t2+S[0])
    cp=f32(1)+t2*(((C[3]*t2+C[2])*t2+C[1])*t2+C[0])
    z0=r*(sp if q&1 else cp); z1=r*(cp if q&1 else sp)
    if (q+1)&2: z0=-z0
    if q&2: z1=-z1
    assert all(type(v)==np.float32 for v in (u,x,p,lnu,r,t,t2,sp,cp,z0,z1)), [type(v) for v in (u,x,p,lnu,r,t,sp,cp,z0,z1)]
    return z0,z1
def fill(k,start,n):
    out=[]
    for e in range(start,start+n):
        out.append(pair(k,e//2)[e%2])
    return out
k=counter_key(42,0,0); print('key',k)
print('s0', [repr(float(v)) for v in fill(k,0,6)])
print('s2^40+1', [repr(float(v)) for v in fill(counter_key(7,3,11),2**40+1,4)])
print('wrap', [repr(float(v)) for v in fill(counter_key(1,2,3),2**33-2,4)])
