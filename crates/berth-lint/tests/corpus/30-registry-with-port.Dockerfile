FROM registry.internal:5000/platform/base:3.2 AS base
FROM registry.internal:5001/platform/base:3.2
FROM 10.0.0.7:5000/platform/base:3.2
