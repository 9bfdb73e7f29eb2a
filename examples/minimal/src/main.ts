import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';

if (!process.env.DATABASE_URL) {
  console.error('set DATABASE_URL to a PostgreSQL database (the migrations run at start)');
  process.exit(1);
}
const app = await NestFactory.create(AppModule);
// SIGTERM/SIGINT close the app: the listener's connection ends and, in strong mode, the process leaves cleanly.
app.enableShutdownHooks();
const port = Number(process.env.PORT ?? 3000);
await app.listen(port, '127.0.0.1');
console.log(`minimal example: listening on http://127.0.0.1:${port}/`);
