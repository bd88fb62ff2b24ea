#  ESCAPE = `
#Syntax=docker/dockerfile:1
FROM `
  localhost:5000/gallery/base:2.1
RUN echo C:\path
