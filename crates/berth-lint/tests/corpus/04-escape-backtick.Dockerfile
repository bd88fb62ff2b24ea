# escape=`
FROM localhost:5000/gallery/windows-base:ltsc2022 `
    AS build
SHELL ["powershell", "-Command"]
COPY src\ C:\src\
RUN New-Item -ItemType Directory C:\out ; `
    Copy-Item C:\src\* C:\out\

FROM mcr.microsoft.com/windows/nanoserver:ltsc2022
COPY --from=build C:\out\ C:\app\
