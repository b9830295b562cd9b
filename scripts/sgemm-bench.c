// sgemm throughput of the system OpenBLAS, with a spot check against a double-precision reference.
// Build: gcc -O2 -o /tmp/sgemm scripts/sgemm-bench.c $(pkg-config --cflags --libs openblas) -lm
// Run:   OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=2 /tmp/sgemm 3136 64 576   (M N K)
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <math.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
int main(int argc,char**argv){
  int M=atoi(argv[1]),N=atoi(argv[2]),K=atoi(argv[3]);
  float*A=malloc(4L*M*K),*B=malloc(4L*K*N),*C=malloc(4L*M*N);
  srand(1);for(long i=0;i<(long)M*K;i++)A[i]=rand()/(float)RAND_MAX-0.5f;for(long i=0;i<(long)K*N;i++)B[i]=rand()/(float)RAND_MAX-0.5f;
  cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,M,N,K,1,A,K,B,N,0,C,N);
  // check a few entries in double
  double maxerr=0;for(int s=0;s<200;s++){int i=rand()%M,j=rand()%N;double r=0;for(int k=0;k<K;k++)r+=(double)A[(long)i*K+k]*B[(long)k*N+j];double e=fabs(r-C[(long)i*N+j]);if(e>maxerr)maxerr=e;}
  int reps=20;double t0=now();for(int r=0;r<reps;r++)cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,M,N,K,1,A,K,B,N,0,C,N);double dt=(now()-t0)/reps;
  printf("%s M=%d N=%d K=%d: %.1f GFLOP/s maxerr %.2e core=%s\n",getenv("OPENBLAS_CORETYPE"),M,N,K,2.0*M*N*K/dt/1e9,maxerr,openblas_get_corename());
}
